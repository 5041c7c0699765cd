"""The ``mine`` stage: hard negatives for a later stage's data, mined with a model of the recipe.

Each dataset of the stage becomes ``<stage>/<dataset name>.jsonl`` with ``anchor, positive, negative_1..n``
(:func:`embedforge.mining.mine_hard_negatives`); a later ``train`` stage reads it as a ``kind: triplets`` dataset
with ``path: "@<stage>/<dataset name>.jsonl"``. Alternating the two is iterative mining — each ``mine`` stage uses
the model of the stage before it (Seed1.5-Embedding: negatives chosen by the preferences of the model being
trained; KaLM-Embedding-V2: 7 negatives from ranks 50-100 of the previously trained model)::

    stages:
      pretrain: {datasets: [...]}
      mine:                                   # model: None = the previous stage's model (pretrain)
        datasets:
          - {name: debian, path: data/debian.jsonl.gz, kind: pairs, instruction: "Given a summary, ..."}
        range_min: 50
        range_max: 100
        num_negatives: 7
      finetune:
        datasets:
          - {name: debian, path: "@mine/debian.jsonl", kind: triplets, instruction: "Given a summary, ..."}
      mine2: {datasets: [...same sources...]}  # now mined with finetune's model
      finetune2: {datasets: [{name: debian, path: "@mine2/debian.jsonl", kind: triplets, ...}]}

The stage does not produce a model: the stage after it continues from the model before it.
"""

from __future__ import annotations

import logging

from embedforge.data.config import check_unique_names
from embedforge.errors import ConfigError
from embedforge.recipes.context import MineSummary, StageContext, StageResult
from embedforge.recipes.schema import MineStageConfig, StageType, register_stage_type

logger = logging.getLogger(__name__)


def validate(config: MineStageConfig, where: str) -> None:
    """Check the options when the recipe is loaded, before any model or data is touched."""
    from embedforge.mining.miner import MINABLE_KINDS

    if not config.datasets:
        raise ConfigError(f"{where}.datasets: a mine stage needs at least one dataset")
    check_unique_names(config.datasets)
    for index, dataset in enumerate(config.datasets):
        if dataset.kind not in MINABLE_KINDS:
            raise ConfigError(
                f"{where}.datasets[{index}].kind: {dataset.kind!r} is not mined (its negatives are texts of other "
                f"labels, built by the converter); mined kinds: {', '.join(MINABLE_KINDS)}"
            )
    config.check(where)


def run(config: MineStageConfig, context: StageContext) -> StageResult:
    """Mine every dataset with the referenced model; write ``<stage>/<name>.jsonl``; report the counts."""
    import torch
    from accelerate import PartialState

    from embedforge.mining import mine_hard_negatives, read_corpus, write_jsonl
    from embedforge.recipes.stage_paths import resolve_stage_path, resolve_stage_paths

    output_dir = context.directory.parent
    model_path = context.model_ref(config.model)
    files = {d.name: str(context.directory / f"{d.name}.jsonl") for d in config.datasets}
    mined: dict[str, dict] = {}
    state = PartialState(cpu=not torch.cuda.is_available())
    if state.is_main_process:  # one process mines; under torchrun the others wait for the files
        datasets = resolve_stage_paths(config.datasets, output_dir)
        corpus_paths = [config.corpus] if isinstance(config.corpus, str) else list(config.corpus or [])
        corpus = read_corpus([resolve_stage_path(p, output_dir) for p in corpus_paths], column=config.corpus_column)
        model = context.load_model(config.model)
        seed = context.recipe.seed if config.seed is None else config.seed
        for dataset in datasets:
            result = mine_hard_negatives(model, dataset, config, corpus=corpus or None, seed=seed)  # config: options
            write_jsonl(result.dataset, files[dataset.name])
            mined[dataset.name] = result.stats.to_dict()
            logger.info("stage %s: wrote %s (%d rows)", context.name, files[dataset.name], result.stats.rows)
    state.wait_for_everyone()
    return StageResult(model_path=None, summary=MineSummary(model=model_path, files=files, mined=mined))


run.validate = validate  # checked by the recipe loader

register_stage_type(
    StageType(
        name="mine",
        config_class=MineStageConfig,
        run=run,
        path_fields=("corpus",),
        produces_model=False,
        summary_class=MineSummary,
    )
)
