"""Turn encoded rows into the response's ``embedding`` values: Matryoshka truncation, quantization, base64.

Semantics, in the order applied to each row ``e`` that ``SentenceTransformer.encode`` returned:

1. ``dimensions=d`` (optional): ``e[:d] / ||e[:d]||`` (truncate, then L2-renormalize; a zero vector stays 0).
   Without ``dimensions`` the row is returned exactly as ``encode`` gave it.
2. ``quantization`` (optional), with sentence-transformers' :func:`quantize_embeddings`:

   * ``binary`` / ``ubinary``: one bit per dimension (``value > 0``), packed big-endian into
     ``ceil(d / 8)`` bytes; ``binary`` stores each byte minus 128 as int8, ``ubinary`` as uint8.
   * ``int8`` / ``uint8``: each dimension ``j`` is cut into 255 equal steps between a fixed
     ``low[j]`` and ``high[j]`` (values outside are clipped); ``uint8`` is the step index 0..255,
     ``int8`` the index minus 128. The ranges never depend on the request, so the same text always
     gives the same bytes. They come from, in order of preference, calibration embeddings given to
     the server (min / max per dimension, after the same step 1), else a symmetric ``[-s, s]`` with
     ``s = int8_range`` or, by default, ``min(1, 4 / sqrt(d))`` (about 4 standard deviations of a
     coordinate of a random unit vector; suited to normalized models only).
3. ``encoding_format``: ``float`` gives JSON numbers (ints for quantized rows); ``base64`` gives the
   row's bytes, base64-encoded: little-endian float32 (what the ``openai`` client decodes), or the
   int8 / uint8 / packed bytes for quantized rows.

Caveat for the ``openai`` Python client: when ``encoding_format`` is *not* passed it asks for
``base64`` and decodes the bytes as float32. With ``quantization`` always pass ``encoding_format``
explicitly (``"float"`` for integer lists, ``"base64"`` for the raw bytes).
"""

from __future__ import annotations

import base64
import math
from typing import Any

import numpy as np

from embedforge.utils.matryoshka import truncate_and_renormalize

_QUANTIZED_DTYPES = {"int8": np.int8, "uint8": np.uint8, "binary": np.int8, "ubinary": np.uint8}


class Int8Ranges:
    """Fixed per-dimension ``(low, high)`` ranges for int8 / uint8 quantization.

    Args:
        calibration: optional ``(m, D)`` embeddings of representative texts, as the model encodes
            them; the ranges are their per-dimension min / max (after truncation to the requested
            ``dimensions`` and renormalization, when a request asks for fewer dimensions).
        scale: without calibration, the symmetric range ``[-scale, scale]`` for every dimension;
            ``None`` uses ``min(1, 4 / sqrt(d))``.
    """

    def __init__(self, *, calibration: np.ndarray | None = None, scale: float | None = None):
        if calibration is not None:
            calibration = np.asarray(calibration, dtype=np.float32)
            if calibration.ndim != 2 or len(calibration) < 2:
                raise ValueError(f"calibration must be an (m >= 2, dim) array, got shape {calibration.shape}")
        if scale is not None and not (scale > 0 and math.isfinite(scale)):
            raise ValueError(f"int8 range scale must be a positive number, got {scale}")
        self.calibration = calibration
        self.scale = scale
        self._cache: dict[int | None, np.ndarray] = {}

    def for_request(self, dim: int, dimensions: int | None) -> np.ndarray:
        """The ``(2, dim)`` ranges for rows of ``dim`` columns produced with ``dimensions``."""
        key = dimensions
        if key not in self._cache:
            if self.calibration is not None:
                calib = (
                    self.calibration if dimensions is None else truncate_and_renormalize(self.calibration, dimensions)
                )
                ranges = np.vstack([calib.min(axis=0), calib.max(axis=0)]).astype(np.float32)  # (2, d)
            else:
                s = self.scale if self.scale is not None else min(1.0, 4.0 / math.sqrt(dim))
                ranges = np.vstack([np.full(dim, -s), np.full(dim, s)]).astype(np.float32)  # (2, d)
            self._cache[key] = ranges
        return self._cache[key]

    def describe(self) -> str:
        """One line for logs and ``GET /v1/models``."""
        if self.calibration is not None:
            return f"calibrated min/max per dimension over {len(self.calibration)} embeddings"
        if self.scale is not None:
            return f"fixed symmetric [-{self.scale}, {self.scale}] per dimension"
        return "fixed symmetric [-s, s] per dimension, s = min(1, 4/sqrt(dimensions))"


def apply_output_options(
    rows: np.ndarray,
    *,
    dimensions: int | None,
    quantization: str | None,
    int8_ranges: Int8Ranges,
) -> np.ndarray:
    """Steps 1 and 2 of the module docstring: the array whose rows are returned."""
    from sentence_transformers.util import quantize_embeddings

    out = np.asarray(rows, dtype=np.float32) if dimensions is None else truncate_and_renormalize(rows, dimensions)
    if quantization is None or quantization == "float32":
        return out
    ranges = int8_ranges.for_request(out.shape[1], dimensions) if quantization.endswith("int8") else None
    quantized = quantize_embeddings(out, precision=quantization, ranges=ranges)
    return np.asarray(quantized, dtype=_QUANTIZED_DTYPES[quantization])


def encode_rows(rows: np.ndarray, encoding_format: str) -> list[Any]:
    """Step 3: each row as a JSON-ready value (list of numbers, or a base64 string)."""
    if encoding_format == "base64":
        if rows.dtype == np.float32:
            rows = rows.astype("<f4", copy=False)
        return [base64.b64encode(row.tobytes()).decode("ascii") for row in rows]
    return rows.tolist()
