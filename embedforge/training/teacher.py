"""Teacher embeddings as labels, for distillation losses (SEA-Embedding's similarity distribution matching).

A frozen teacher encodes every text column of every training row once, before training; the result,
``(columns, teacher_dim)`` per row, becomes the row's ``label`` (the layout ``SDMLoss`` and
sentence-transformers' ``MSELoss`` expect). The first column is encoded as a query
(``encode_query``: the teacher's own query prompt), the others as documents.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

_NOT_TEXT = {"dataset_name", "score", "label", "labels"}


def add_teacher_embeddings(datasets: Any, teacher: Any, *, batch_size: int = 64) -> Any:
    """Return ``datasets`` (a DatasetDict) with a ``label`` column of teacher embeddings ``(columns, dim)``."""
    from datasets import DatasetDict

    out = {}
    for name, dataset in datasets.items():
        columns = [c for c in dataset.column_names if c not in _NOT_TEXT]
        vectors = []
        for index, column in enumerate(columns):
            encode = teacher.encode_query if index == 0 else teacher.encode_document
            vectors.append(
                np.asarray(encode(list(dataset[column]), batch_size=batch_size, convert_to_numpy=True), np.float32)
            )
        labels = np.stack(vectors, axis=1)  # (rows, columns, teacher_dim)
        logger.info("teacher embeddings for %s: %s", name, labels.shape)
        if "label" in dataset.column_names:  # class ids of labelled rows: the teacher's vectors take their place
            dataset = dataset.remove_columns("label")
        out[name] = dataset.add_column("label", labels.tolist())
    return DatasetDict(out)
