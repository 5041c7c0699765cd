"""Embedding cache keyed by model fingerprint and (prompt, text).

Texts shared between tasks, between Matryoshka dimensions and between repeated runs are encoded
once: embeddings live in memory for the run and, unless disabled, in a SQLite file per model under
``<cache_dir>/<fingerprint>.sqlite`` (atomic transactions, safe to interrupt).
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)


def model_fingerprint(model: SentenceTransformer) -> str:
    """A digest of everything that determines a model's embeddings.

    Covers the module stack and its configuration, the backbone's model config (attention mask mode,
    ...), the maximum sequence length, the tokenizer, and every weight, so a retrained or differently
    configured model never reuses stale embeddings.
    """
    import torch

    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr(model).encode())
    digest.update(f"max_seq_length={model.max_seq_length}".encode())
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is not None:
        digest.update(f"{type(tokenizer).__name__}:{getattr(tokenizer, 'padding_side', '')}".encode())
        if hasattr(tokenizer, "get_vocab"):
            digest.update(repr(sorted(tokenizer.get_vocab().items())).encode())
    for _, module in model.named_modules():  # model configs: e.g. is_causal changes a decoder's outputs
        config = getattr(module, "config", None)
        if hasattr(config, "to_json_string"):
            digest.update(config.to_json_string(use_diff=False).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tensor.dtype).encode())
        data = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()


def text_key(role: str, prompt: str | None, text: str) -> bytes:
    """Cache key of one text encoded with ``prompt`` in ``role`` (query/document/"")."""
    return hashlib.blake2b(f"{role}\x1f{prompt or ''}\x1f{text}".encode(), digest_size=16).digest()


class EmbeddingCache:
    """Float32 embeddings by key: a dict for the run, plus an optional SQLite file on disk."""

    def __init__(self, fingerprint: str, directory: str | Path | None = None):
        self.fingerprint = fingerprint
        self._memory: dict[bytes, np.ndarray] = {}
        self._db: sqlite3.Connection | None = None
        self.path: Path | None = None
        if directory is not None:
            self.path = Path(directory).expanduser() / f"{fingerprint}.sqlite"
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS emb (key BLOB PRIMARY KEY, vec BLOB NOT NULL)")
            self._db.commit()

    def get_many(self, keys: Iterable[bytes]) -> dict[bytes, np.ndarray]:
        """The cached embeddings among ``keys`` (memory first, then disk)."""
        found: dict[bytes, np.ndarray] = {}
        missing = []
        for key in keys:
            if key in self._memory:
                found[key] = self._memory[key]
            else:
                missing.append(key)
        if self._db is not None and missing:
            for start in range(0, len(missing), 900):  # SQLite's bound-parameter limit
                chunk = missing[start : start + 900]
                marks = ",".join("?" * len(chunk))
                for key, blob in self._db.execute(f"SELECT key, vec FROM emb WHERE key IN ({marks})", chunk):
                    vector = np.frombuffer(blob, dtype=np.float32)
                    self._memory[key] = vector
                    found[key] = vector
        return found

    def put_many(self, items: dict[bytes, np.ndarray]) -> None:
        """Store embeddings (one transaction on disk)."""
        for key, vector in items.items():
            self._memory[key] = np.asarray(vector, dtype=np.float32)
        if self._db is not None and items:
            with self._db:
                self._db.executemany(
                    "INSERT OR REPLACE INTO emb (key, vec) VALUES (?, ?)",
                    [(key, self._memory[key].tobytes()) for key in items],
                )

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def __len__(self) -> int:
        return len(self._memory)
