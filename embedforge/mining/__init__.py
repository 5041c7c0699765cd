"""Hard-negative mining with the model being trained (KaLM-Embedding-V2 §3.4.1, Seed1.5-Embedding).

Public API (imported lazily: sentence-transformers takes seconds to import)::

    from embedforge.mining import mine_hard_negatives, read_corpus, write_jsonl

    result = mine_hard_negatives(model, dataset_config, corpus=read_corpus("corpus.jsonl"),
                                 range_min=50, range_max=100, num_negatives=7, relative_margin=0.05, seed=42)
    write_jsonl(result.dataset, "mined.jsonl")   # anchor, positive, negative_1..7 -> a `kind: triplets` dataset
    result.stats                                  # rows, dropped pairs, filtered candidates, mean scores

In a recipe, the ``mine`` stage (:mod:`embedforge.recipes.stages.mine`) runs this with the previous stage's model
and a later ``train`` stage reads the file as ``path: "@mine/<dataset>.jsonl"``; alternating ``mine`` and
``train`` stages is iterative mining (Seed1.5: negatives chosen by the preferences of the model being trained).
"""

from __future__ import annotations

from embedforge.utils.lazy import lazy_exports

_EXPORTS = {
    "MINABLE_KINDS": "embedforge.mining.miner",
    "MiningResult": "embedforge.mining.miner",
    "MiningStats": "embedforge.mining.miner",
    "MiningOptions": "embedforge.mining.miner",
    "load_pairs": "embedforge.mining.miner",
    "mine_hard_negatives": "embedforge.mining.miner",
    "write_jsonl": "embedforge.mining.miner",
    "read_corpus": "embedforge.mining.corpus",
}

__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
