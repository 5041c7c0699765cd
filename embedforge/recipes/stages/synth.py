"""The ``synth`` stage: synthetic (query, document) pairs for a corpus, written by an LLM, for later stages.

Writes ``<stage>/<name>.jsonl`` (:func:`embedforge.synth.synthesize`: generate, decontaminate, round-trip filter,
optional LLM judge, optional mined hard negatives; provenance columns on every row). A later ``train`` stage reads
it with ``path: "@<stage>/<name>.jsonl"`` as ``kind: pairs`` (or ``kind: triplets`` with ``num_negatives``). The
round-trip filter and the miner use a model of the recipe (``model``: None = the previous stage's model), so the
pairs kept are the ones the model being trained finds consistent (Seed1.5-Embedding, "Synthetic Data")::

    stages:
      synth:
        corpus: data/my_documents.jsonl         # documents only: no queries needed
        text_column: text
        generator: {spec: SmolLM2-135M-Instruct}  # or {spec: "openai:MODEL", base_url: http://host:8000/v1}
        queries_per_doc: 2
        max_docs: 2000
        filter_top_k: 3
        num_negatives: 4
        decontaminate_against: [data/eval]
      finetune:
        datasets:
          - {name: synth, path: "@synth/synth.jsonl", kind: triplets}

The generation log ``<stage>/<name>.generations.jsonl`` makes an interrupted stage resumable: ``--resume`` reruns
the stage and documents already generated are skipped. The stage does not produce a model.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field

from embedforge.errors import ConfigError
from embedforge.recipes.context import StageContext, StageResult
from embedforge.recipes.schema import StageType, register_stage_type
from embedforge.synth.generators import GeneratorConfig
from embedforge.synth.templates import QUERY_TYPES

logger = logging.getLogger(__name__)


@dataclass
class SynthStageConfig:
    """Synthesize (query, document) pairs for a corpus (see :class:`embedforge.synth.SynthConfig`)."""

    corpus: str  # jsonl / jsonl.gz / parquet file or BEIR directory of documents
    type: str = "synth"
    name: str = "synth"  # output file <stage>/<name>.jsonl
    model: str | None = None  # filter/mining model: None = the previous stage's model; "base"; a stage; a folder
    text_column: str = "text"  # column of a document's text
    id_column: str | None = None  # None: _id / id / doc_id when present, else a hash of the text
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)  # the LLM (local or OpenAI-compatible)
    templates: list[str] = field(default_factory=lambda: list(QUERY_TYPES))  # query types in turn
    queries_per_doc: int = 3  # replies per document
    max_docs: int | None = None  # a seeded random subset of this many documents (None: all)
    max_doc_chars: int = 2000  # a document is cut to this many characters in the prompt
    docs_per_batch: int = 16  # documents per generate() call and log flush
    seed: int | None = None  # None: the recipe's seed
    filter_top_k: int | None = 3  # round-trip filter: keep pairs whose document ranks < k (None: keep all)
    query_prompt: str = ""  # prompt on queries when filtering and mining (the training instruction)
    judge_threshold: float | None = None  # also keep only pairs an LLM judge scores >= this (None: no judge)
    judge_template: str = "judge_pointwise"
    num_negatives: int = 0  # hard negatives mined per kept pair (0: pairs only)
    range_min: int = 10  # mining rank window
    range_max: int = 50
    relative_margin: float | None = 0.05  # mining false-negative filter
    decontaminate_against: list[str] = field(default_factory=list)  # eval task directories
    batch_size: int = 64  # embedding batch size
    strip_lead_ins: bool = False  # cut "The document supports the finding that" lead-ins (SynthConfig)


def validate(config: SynthStageConfig, where: str) -> None:
    """Check the options when the recipe is loaded, before any model is touched."""
    from embedforge.synth.templates import load_templates

    if "/" in config.name or not config.name:
        raise ConfigError(f"{where}.name: a file name without '/', got {config.name!r}")
    load_templates(config.templates)
    _synth_config(config, output="unused.jsonl", filter_model="unused", seed=0)  # the library's own checks


def run(config: SynthStageConfig, context: StageContext) -> StageResult:
    """Synthesize into ``<stage>/<name>.jsonl`` with the referenced model as filter and miner."""
    from embedforge.synth import synthesize

    output = context.directory / f"{config.name}.jsonl"
    seed = context.recipe.seed if config.seed is None else config.seed
    model = context.load_model(config.model)
    library = _synth_config(config, output=str(output), filter_model=context.model_ref(config.model), seed=seed)
    result = synthesize(library, model=model)
    logger.info("stage %s: wrote %s (%d rows)", context.name, output, result.rows)
    summary = {k: v for k, v in result.stats.items() if k != "settings"}
    return StageResult(
        model_path=None, summary={"model": context.model_ref(config.model), "file": str(output), **summary}
    )


def _synth_config(config: SynthStageConfig, *, output: str, filter_model: str, seed: int):
    from embedforge.synth import SynthConfig

    shared = {f.name for f in dataclasses.fields(SynthConfig)} & {f.name for f in dataclasses.fields(config)}
    values = {name: getattr(config, name) for name in shared}
    return SynthConfig(**{**values, "output": output, "filter_model": filter_model, "seed": seed})


run.validate = validate  # checked by the recipe loader

register_stage_type(
    StageType(
        name="synth",
        config_class=SynthStageConfig,
        run=run,
        path_fields=("corpus", "decontaminate_against"),
        produces_model=False,
    )
)
