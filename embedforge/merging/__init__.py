"""Model soups: parameter averaging of fine-tuned checkpoints (KaLM-Embedding-V2 §3.3, Wortsman et al. 2022).

One file per method, each a pure function over state dicts (or over losses, for the weights):

* :mod:`.uniform` — ``θ = (1/n) Σ θ_i``;
* :mod:`.weighted` — ``θ = Σ w_i θ_i / Σ w_j`` (the averaging every method ends in);
* :mod:`.cocktail` — LM-Cocktail weights ``softmax(-L_i / T)`` from each model's loss on a few examples;

and :mod:`.soup` for whole SentenceTransformer folders (load, merge LoRA adapters, check the architecture,
average, save with a model card). Public API (imported lazily: torch and sentence-transformers are slow to
import)::

    from embedforge.merging import merge_models, save_soup, uniform_average, weighted_average

    result = merge_models(["runs/a/final", "runs/b/final"], method="weighted", weights=[0.3, 0.7])
    save_soup(result, "runs/soup")

In a recipe, the ``merge`` stage (:mod:`embedforge.recipes.stages.merge`) does this for stage models and
checkpoints.
"""

from __future__ import annotations

from embedforge.utils.lazy import lazy_exports

_EXPORTS = {
    "uniform_average": "embedforge.merging.uniform",
    "uniform_weights": "embedforge.merging.uniform",
    "normalize_weights": "embedforge.merging.weighted",
    "weighted_average": "embedforge.merging.weighted",
    "cocktail_weights": "embedforge.merging.cocktail",
    "example_loss": "embedforge.merging.cocktail",
    "load_examples": "embedforge.merging.cocktail",
    "MERGE_METHODS": "embedforge.merging.soup",
    "MergeMethod": "embedforge.merging.soup",
    "SoupResult": "embedforge.merging.soup",
    "check_compatible": "embedforge.merging.soup",
    "check_merge_options": "embedforge.merging.soup",
    "load_ingredient": "embedforge.merging.soup",
    "merge_models": "embedforge.merging.soup",
    "register_merge_method": "embedforge.merging.soup",
    "save_soup": "embedforge.merging.soup",
    "soup_card": "embedforge.merging.soup",
}

__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
