"""Matryoshka truncation, shared by evaluation (several ``--dims`` from one pass) and serving (``dimensions``)."""

from __future__ import annotations

import numpy as np


def truncate_and_renormalize(rows: np.ndarray, dimensions: int | None) -> np.ndarray:
    """Keep the first ``dimensions`` columns and L2-normalize each row: ``e[:d] / max(||e[:d]||, 1e-12)``.

    ``None`` (or the full width, or more) returns ``rows`` unchanged: the model's own embedding.

    Computed with sentence-transformers' own helpers (``torch.nn.functional.normalize`` in float32, the op
    ``SentenceTransformer.encode(normalize_embeddings=True)`` uses), so the result is bit-identical to a
    SentenceTransformer loaded with ``truncate_dim=d``: numpy's norm differs in the last bit on about a
    quarter of the values, and MTEB's k-means clustering can flip on such a difference.

    Args:
        rows: ``(n, D)`` float embeddings.
        dimensions: ``1 <= dimensions``; None or ``>= D``: no truncation.

    Returns:
        ``(n, dimensions)`` float32 rows of unit length (zero rows stay zero).
    """
    if dimensions is None or dimensions >= rows.shape[1]:
        return rows
    import torch
    from sentence_transformers.util import normalize_embeddings, truncate_embeddings

    kept = np.ascontiguousarray(truncate_embeddings(rows, dimensions), dtype=np.float32)  # (n, d)
    return normalize_embeddings(torch.from_numpy(kept)).numpy()
