"""What a stage gets besides its config (:class:`StageContext`) and what it leaves (:class:`StageResult`).

Stage modules import this module and :mod:`embedforge.recipes.schema`, never the runner or the loader, so the
import graph has no cycle: ``loader -> stages -> (context, schema)``, ``runner -> (loader, context, schema)``.

A stage's summary is a dataclass (:class:`TrainSummary`, :class:`MineSummary`, ...): later stages and the
model card read typed fields, not dict keys; ``<stage>/stage.json`` stores it as plain data and
:func:`summary_from_dict` reads it back on ``--resume``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embedforge.errors import ConfigError
from embedforge.recipes.schema import Recipe

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer


@dataclass(kw_only=True)
class StageSummary(Mapping[str, Any]):
    """Facts every stage reports (the model card and the logs read them).

    Read the typed fields; the read-only mapping view (``summary["steps"]``, ``summary.get(...)``) is kept for
    scripts written against the plain-dict summaries of earlier versions.
    """

    seconds: float | None = None  # wall time of the stage (set by the runner)

    def __getitem__(self, key: str) -> Any:
        if key not in self._names():
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())

    def _names(self) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(self))


@dataclass(kw_only=True)
class TrainSummary(StageSummary):
    """What a ``train`` stage did."""

    global_batch: int  # anchors per optimizer step, all processes
    world_size: int  # processes
    dtype: str  # bf16 | fp32
    hard_negatives_per_query: dict[str, int]  # dataset -> hard-negative columns
    init: str  # the model the stage started from
    lora: dict[str, Any] | None = None  # the LoRA settings (None: full fine-tuning)
    trainable_parameters: int = 0
    total_parameters: int = 0
    router_aux_loss_coef: float | None = None  # MoE backbones: the router loss weight (None: dense model)
    steps: int = 0  # optimizer steps taken
    train_seconds: float = 0.0
    samples_per_second: float = 0.0
    final_loss: float | None = None
    decontaminated_against: list[str] = field(default_factory=list)  # eval task dirs whose texts were removed
    datasets: list[dict[str, Any]] = field(default_factory=list)  # the loaded datasets (DatasetInfo as data)
    losses: dict[str, str] = field(default_factory=dict)  # dataset -> loss description


@dataclass(kw_only=True)
class MineSummary(StageSummary):
    """What a ``mine`` stage wrote."""

    model: str  # the model that mined
    files: dict[str, str]  # dataset -> mined jsonl
    mined: dict[str, dict[str, Any]]  # dataset -> MiningStats as data


@dataclass(kw_only=True)
class MergeSummary(StageSummary):
    """What a ``merge`` stage averaged."""

    method: str  # uniform | weighted | cocktail
    ingredients: list[dict[str, Any]] = field(default_factory=list)  # model, path, weight
    example_losses: list[float] | None = None  # cocktail: each ingredient's loss on the examples


@dataclass(kw_only=True)
class EvalSummary(StageSummary):
    """What an ``eval`` stage measured."""

    model: str  # the model evaluated
    scores: dict[str, Any]  # task -> main score


def summary_from_dict(cls: type[StageSummary] | None, data: dict[str, Any]) -> Any:
    """A saved summary back as ``cls`` (unknown keys are ignored: files from other versions); plain data without."""
    if cls is None:
        return data
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class StageResult:
    """What a stage leaves for the next ones."""

    model_path: str | None = None  # the stage's model (a SentenceTransformer folder), if it makes one
    summary: StageSummary = field(default_factory=StageSummary)  # facts for the model card and the logs


@dataclass
class StageContext:
    """What a stage's ``run`` gets besides its config."""

    recipe: Recipe
    name: str  # stage name
    directory: Path  # <output_dir>/<stage>
    resume: bool
    models: dict[str, str]  # "base" and every finished model-producing stage -> model path/preset
    previous_model: str  # the model the previous stage ended with (the base for the first)
    summaries: dict[str, StageSummary]  # finished stages' summaries

    def model_ref(self, ref: str | None) -> str:
        """Resolve a stage's ``init``/``model`` reference: None = previous model, "base", a stage name, a folder."""
        if ref is None:
            return self.previous_model
        if ref in self.models:
            return self.models[ref]
        if ref in self.recipe.stages:
            raise ConfigError(
                f"{self.recipe.source}: stages.{self.name}: refers to stage {ref!r}, which has not run before it"
            )
        return ref

    def load_model(self, ref: str | None) -> SentenceTransformer:
        """Load the referenced model; the base gets the recipe's model options.

        The decoder options (``bidirectional``, ``dtype``, ``padding_side``, ``attn_implementation``) apply
        to every model a stage loads, so a causal recipe stays causal from stage to stage. LoRA is not
        attached here: the train stage does that (:mod:`embedforge.training.backbones`).
        """
        from embedforge.models import load_model

        target = self.model_ref(ref)
        options = self.recipe.model
        decoder = {
            "bidirectional": options.bidirectional,
            "dtype": options.dtype,
            "padding_side": options.padding_side,
            "attn_implementation": options.attn_implementation,
        }
        if target == self.models["base"]:
            model = load_model(
                target,
                max_seq_length=options.max_seq_length,
                pooling=options.pooling,
                normalize=options.normalize,
                **decoder,
            )
        else:
            model = load_model(target, **decoder)
        if not options.include_prompt:
            for module in model:
                if hasattr(module, "include_prompt"):
                    module.include_prompt = False
        return model
