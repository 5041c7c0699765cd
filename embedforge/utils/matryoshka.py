"""Matryoshka truncation, shared by evaluation (several ``--dims`` from one pass) and serving (``dimensions``)."""

from __future__ import annotations

import numpy as np


def truncate_and_renormalize(rows: np.ndarray, dimensions: int) -> np.ndarray:
    """Keep the first ``dimensions`` columns and L2-normalize each row: ``e[:d] / max(||e[:d]||, 1e-12)``.

    Computed with the op ``SentenceTransformer.encode(normalize_embeddings=True)`` uses
    (``torch.nn.functional.normalize`` in float32), so the result is bit-identical to a SentenceTransformer
    loaded with ``truncate_dim=d``: numpy's norm differs in the last bit on about a quarter of the values,
    and MTEB's k-means clustering can flip on such a difference.

    Args:
        rows: ``(n, D)`` float embeddings.
        dimensions: ``1 <= dimensions <= D``.

    Returns:
        ``(n, dimensions)`` float32 rows of unit length (zero rows stay zero).
    """
    import torch

    kept = torch.from_numpy(np.ascontiguousarray(rows[:, :dimensions], dtype=np.float32))  # (n, d)
    return torch.nn.functional.normalize(kept, p=2, dim=1).numpy()
