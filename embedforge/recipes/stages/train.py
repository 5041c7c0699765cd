"""The ``train`` stage: contrastive training on mixed datasets with the Hugging Face Trainer.

Data (``embedforge.data``) -> one loss per dataset (:func:`embedforge.losses.objective.build_objectives`: the
stage's base loss with the dataset's flags, CoSENT for scored STS pairs, then GradCache -> Matryoshka -> MoE
router loss) -> :class:`~embedforge.training.trainer.EmbedforgeTrainer` with weighted,
homogeneous, duplicate-free, length-grouped batches -> ``<stage>/final`` (a SentenceTransformer folder
with prompts and a model card), TensorBoard logs in ``<stage>/runs/``, ``<stage>/loss.png``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from embedforge.errors import ConfigError
from embedforge.recipes.context import StageContext, StageResult, TrainSummary
from embedforge.recipes.schema import Recipe, StageType, TrainStageConfig, register_stage_type
from embedforge.utils.config import to_plain

logger = logging.getLogger(__name__)


def validate(config: TrainStageConfig, where: str) -> None:
    """Check the objective and the options when the recipe is loaded, before any data or model is touched."""
    from embedforge.losses.objective import check_objective

    check_objective([d.resolved() for d in config.datasets], config, where, teacher=config.teacher is not None)
    for key in ("batch_size", "save_steps", "logging_steps", "gradient_accumulation_steps"):
        if getattr(config, key) < 1:
            raise ConfigError(f"{where}.{key}: must be >= 1, got {getattr(config, key)}")
    near = config.decontaminate_near_duplicates
    if near is not None and not 0.0 < near <= 1.0:
        raise ConfigError(f"{where}.decontaminate_near_duplicates: a Jaccard threshold in (0, 1], got {near}")
    if config.max_steps is not None and config.max_steps < 1:
        raise ConfigError(f"{where}.max_steps: must be >= 1, got {config.max_steps}")
    _check_evaluation(config, where)
    _check_trainer_args(config.trainer_args, f"{where}.trainer_args")
    from embedforge.training.speed import TrainingSpeed

    TrainingSpeed.from_dict(config.speed, f"{where}.speed")


def _check_evaluation(config: TrainStageConfig, where: str) -> None:
    if config.eval_steps is None:
        if config.eval_tasks or config.load_best_model_at_end:
            key = "eval_tasks" if config.eval_tasks else "load_best_model_at_end"
            raise ConfigError(f"{where}.{key}: needs eval_steps (evaluate every N steps) too")
        return
    if config.eval_steps < 1:
        raise ConfigError(f"{where}.eval_steps: must be >= 1, got {config.eval_steps}")
    if not config.eval_tasks:
        raise ConfigError(f"{where}.eval_tasks: eval_steps needs task directories to score")
    if config.eval_dims is not None and config.matryoshka is not None:
        extra = sorted(set(config.eval_dims) - set(config.matryoshka.dims))
        if extra:
            logger.info("%s.eval_dims %s are not trained Matryoshka dimensions", where, extra)


_MANAGED_ARGS = {
    "output_dir", "per_device_train_batch_size", "learning_rate", "weight_decay", "warmup_ratio",
    "lr_scheduler_type", "num_train_epochs", "max_steps", "bf16", "gradient_checkpointing",
    "gradient_accumulation_steps", "save_steps", "save_total_limit", "logging_steps", "seed", "prompts",
    "batch_sampler", "multi_dataset_batch_sampler", "eval_steps", "metric_for_best_model", "load_best_model_at_end",
}  # fmt: skip


def _check_trainer_args(trainer_args: dict[str, Any], where: str) -> None:
    import dataclasses

    from sentence_transformers import SentenceTransformerTrainingArguments

    from embedforge.errors import did_you_mean

    valid = {f.name for f in dataclasses.fields(SentenceTransformerTrainingArguments)}
    for key in trainer_args:
        if key in _MANAGED_ARGS:
            raise ConfigError(f"{where}.{key}: set by the stage itself; use the stage key instead")
        if key not in valid:
            raise ConfigError(f"{where}.{key}: not a training argument.{did_you_mean(key, valid)}")


def decontamination_dirs(config: TrainStageConfig, recipe: Recipe) -> list[str]:
    """The evaluation task dirs a stage decontaminates against: its own list, else the recipe's eval tasks."""
    if config.decontaminate_against is not None:
        return list(config.decontaminate_against)
    if recipe.eval is None:
        logger.info("no decontamination: the recipe has no eval section and the stage no decontaminate_against")
        return []
    return [*recipe.eval.tasks, *([recipe.eval.task_root] if recipe.eval.task_root else [])]


def objective_name(loss: Any) -> str:
    """The loss class, through wrappers: ``InfoNCELoss``, ``MatryoshkaLoss(CoSENTLoss)``."""
    inner = getattr(loss, "loss", None)
    name = type(loss).__name__
    return f"{name}({objective_name(inner)})" if inner is not None and hasattr(inner, "forward") else name


def _evaluation_callback(config: TrainStageConfig, directory: Path, inference_length: int | None):
    """The stage's evaluation during training (None without ``eval_steps``); tasks are read now, before training."""
    if config.eval_steps is None:
        return None
    from embedforge.evaluation import find_task_dirs, load_tasks
    from embedforge.training.callbacks import EvaluationCallback

    task_dirs: list[Path] = []
    for entry in map(Path, config.eval_tasks):
        task_dirs += [entry] if (entry / "task.json").is_file() else find_task_dirs(entry)
    return EvaluationCallback(
        load_tasks(task_dirs),
        eval_steps=config.eval_steps,
        dims=config.eval_dims,
        metric_for_best_model=config.metric_for_best_model,
        best_dir=directory / "best",
        max_seq_length=inference_length,
    )


def _last_scores(log_history: list[dict[str, Any]]) -> dict[str, float]:
    entries = [e for e in log_history if any(k.startswith("eval/") for k in e)]
    return {k: v for k, v in entries[-1].items() if k.startswith("eval/")} if entries else {}


def _load_weights(model: Any, folder: str) -> None:
    """Copy the weights of the model saved in ``folder`` into ``model`` (same architecture)."""
    from embedforge.models import load_model

    model.load_state_dict(load_model(folder, device="cpu").state_dict())
    logger.info("final/ is the best evaluated model (%s)", folder)


def _bf16(setting: str | bool) -> bool:
    import torch

    if setting == "auto":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if not isinstance(setting, bool):
        raise ConfigError(f"bf16: expected true, false or 'auto', got {setting!r}")
    return setting


def _add_teacher_targets(config: TrainStageConfig, context: StageContext, datasets):
    """With a ``teacher``, add its embeddings to every row (for SDM distillation); returns (datasets, its dim)."""
    if config.teacher is None:
        return datasets, None
    from embedforge.models import load_model
    from embedforge.training.teacher import add_teacher_embeddings

    teacher = load_model(context.model_ref(config.teacher))
    teacher_dim = teacher.get_embedding_dimension()
    return add_teacher_embeddings(datasets, teacher, batch_size=config.teacher_batch_size), teacher_dim


def _save_final(trainer, config: TrainStageConfig, context: StageContext, summary: TrainSummary, final, max_length):
    """Rank 0: loss curve, model card (every train stage so far), and ``final`` with prompts, atomically."""
    from embedforge.data.instructions import evaluation_prompts
    from embedforge.models import save_model
    from embedforge.training.callbacks import plot_eval_curve, plot_loss_curve
    from embedforge.training.model_card import CARD_INPUTS, model_card
    from embedforge.utils.io import atomic_write_json

    directory = context.directory
    title = f"{context.recipe.name}: {context.name}"
    plot_loss_curve(trainer.state.log_history, directory / "loss.png", title)
    plot_eval_curve(trainer.state.log_history, directory / "eval.png", title)
    instructed = [d for d in config.datasets if d.instruction]
    prompts = None
    if instructed:  # an instruction-trained model is saved with the evaluation instructions as prompts
        evaluation = context.recipe.eval
        task_dirs = (
            [*evaluation.tasks, *([evaluation.task_root] if evaluation.task_root else [])] if evaluation else []
        )
        instructions = evaluation.instructions if evaluation else {}
        prompts = evaluation_prompts(task_dirs, instructions, template=instructed[0].template)
    trained = {**{n: s for n, s in context.summaries.items() if isinstance(s, TrainSummary)}, context.name: summary}
    stages = [{"name": n, "type": "train", **to_plain(s)} for n, s in trained.items()]
    card = {  # model_card() arguments, kept in <stage>/card.json so the recipe's evaluation can add its results
        "title": f"{context.recipe.name}-{context.name}",
        "base_model": str(context.recipe.model.base),
        "description": context.recipe.description,
        "stages": stages,
        "resolved_config": to_plain(context.recipe),
        "prompts": prompts or trainer.model.prompts,
        "root": str(Path.cwd()),
    }
    trainer.model.max_seq_length = max_length  # trained short, saved with the base's inference length
    save_model(trainer.model, final, prompts=prompts, extra_files={"README.md": model_card(**card)})
    atomic_write_json(directory / CARD_INPUTS, card)


def _training_arguments(config: TrainStageConfig, context: StageContext, info, world_size, split_batches, bf16):
    """The stage's settings as ``SentenceTransformerTrainingArguments``; ``trainer_args`` override the defaults."""
    import torch
    from sentence_transformers import SentenceTransformerTrainingArguments

    from embedforge.data.sampler import batch_sampler
    from embedforge.utils.progress import progress_enabled

    # with split_batches every rank sees the same (global) batches, so the sampler plans for one process
    sampler_world = 1 if split_batches else world_size
    defaults = {  # trainer_args may override these
        "report_to": ["tensorboard"],
        "data_seed": context.recipe.seed,
        "save_strategy": "steps",
        "dataloader_drop_last": True,
        "disable_tqdm": not progress_enabled(),  # bars on a terminal, none in CI logs
        "use_cpu": not torch.cuda.is_available(),  # without it, CPU torchrun runs every rank alone
    }
    args = SentenceTransformerTrainingArguments(
        output_dir=str(context.directory),
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        warmup_steps=config.warmup_ratio,  # transformers 5: a float < 1 is a ratio of the steps
        lr_scheduler_type=config.scheduler,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps if config.max_steps is not None else -1,
        bf16=bf16,
        gradient_checkpointing=config.gradient_checkpointing,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        logging_steps=config.logging_steps,
        seed=context.recipe.seed,
        prompts=info.prompts,
        batch_sampler=batch_sampler(group_batches=config.group_batches, length_grouping=config.length_grouping),
        multi_dataset_batch_sampler=info.multi_dataset_batch_sampler(world_size=sampler_world),
        **{**defaults, **config.trainer_args},
    )
    return args


def run(config: TrainStageConfig, context: StageContext) -> StageResult:
    """Train, save ``<stage>/final`` with prompts and a model card, and report the facts."""
    import torch

    from embedforge.data import load_training_datasets
    from embedforge.data.decontaminate import EvalTextIndex
    from embedforge.losses.objective import build_objectives, describe_loss, release_objectives, router_aux_coef
    from embedforge.recipes.stage_paths import resolve_stage_paths
    from embedforge.training.backbones import prepare_backbone
    from embedforge.training.callbacks import LossCurvesCallback, RunSummaryCallback, ThroughputCallback
    from embedforge.training.checkpoints import CompleteCheckpointCallback, checkpoints, last_complete_checkpoint
    from embedforge.training.resume import ResumedLearningRateCallback, restore_finished_training
    from embedforge.training.speed import TrainingSpeed
    from embedforge.training.trainer import EmbedforgeTrainer

    directory = context.directory
    resume_from = last_complete_checkpoint(directory) if context.resume else None
    if not context.resume and checkpoints(directory):
        raise ConfigError(f"{directory} holds checkpoints of an earlier run; pass --resume or --overwrite")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    split_batches = bool((config.trainer_args.get("accelerator_config") or {}).get("split_batches", False))
    model = context.load_model(config.init)
    inference_length = model.max_seq_length
    if config.max_seq_length is not None:
        model.max_seq_length = config.max_seq_length  # train short; the saved model keeps inference_length
    backbone = prepare_backbone(model, context.recipe.model.lora, f"{context.recipe.source}: stages.{context.name}")
    eval_dirs = decontamination_dirs(config, context.recipe)
    datasets, info = load_training_datasets(
        resolve_stage_paths(config.datasets, directory.parent),  # "@mine/x.jsonl": an earlier stage's file
        seed=context.recipe.seed,
        temperature=config.sampling_temperature,
        decontamination=EvalTextIndex.from_task_dirs(eval_dirs, near_duplicates=config.decontaminate_near_duplicates)
        if eval_dirs
        else None,
    )
    datasets, teacher_dim = _add_teacher_targets(config, context, datasets)
    losses = build_objectives(info.datasets, config, model, world_size, teacher_dim=teacher_dim)
    bf16 = _bf16(config.bf16)
    args = _training_arguments(config, context, info, world_size, split_batches, bf16)
    global_batch = config.batch_size * (1 if split_batches else world_size) * config.gradient_accumulation_steps
    summary = TrainSummary(
        global_batch=global_batch,
        world_size=world_size,
        dtype="bf16" if bf16 else "fp32",
        hard_negatives_per_query={n: d.num_negatives for n, d in info.datasets.items()},
        init=context.model_ref(config.init),
        lora=backbone.lora,
        trainable_parameters=backbone.trainable_parameters,
        total_parameters=backbone.total_parameters,
        router_aux_loss_coef=router_aux_coef(model, config),
        decontaminated_against=eval_dirs,
    )
    curves = LossCurvesCallback({name: objective_name(loss) for name, loss in losses.items()})
    evaluation = _evaluation_callback(config, directory, inference_length)
    trainer = EmbedforgeTrainer(
        model=model,
        args=args,
        train_dataset=datasets,
        loss=losses,
        speed=TrainingSpeed.from_dict(config.speed, f"{context.recipe.source}: stages.{context.name}.speed"),
        callbacks=[
            CompleteCheckpointCallback(),
            ResumedLearningRateCallback(config.learning_rate),  # a changed learning rate applies on --resume
            ThroughputCallback(global_batch),
            RunSummaryCallback(to_plain(summary), info.summary()),
            curves,
            *([evaluation] if evaluation is not None else []),
        ],
    )
    # INFO logging off (--quiet, or a library caller that configured no logging): the Trainer's per-step loss dicts
    # are not printed either; the losses still go to TensorBoard, trainer_state.json and the loss curves
    if not logger.isEnabledFor(logging.INFO):
        from transformers import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    trainer.loss_observers.append(curves.observe)
    for callback in (curves, evaluation):
        if callback is not None:
            callback.connect(trainer)
    for name, loss in losses.items():
        logger.info("loss for %s: %s", name, describe_loss(loss))
    # killed after the last step (while saving final/): load that checkpoint rather than train one step more
    restored = restore_finished_training(trainer, resume_from, config.max_steps) if resume_from else None
    output = restored or trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    # a checkpoint at the very end (unless the last step already saved one), so --resume after a crash in
    # the saving below does not retrain
    if restored is None and trainer.state.global_step % config.save_steps != 0:
        trainer._save_checkpoint(trainer.model, trial=None)
        trainer.callback_handler.on_save(trainer.args, trainer.state, trainer.control)

    final = directory / "final"
    release_objectives(losses)  # the MoE router hooks
    backbone.finish(trainer.model)  # merge LoRA adapters: `final` is a plain model
    history = [e for e in trainer.state.log_history if "loss" in e]
    summary.steps = trainer.state.global_step
    summary.train_seconds = round(output.metrics.get("train_runtime", 0.0), 1)
    summary.samples_per_second = round(output.metrics.get("train_samples_per_second", 0.0), 2)
    summary.final_loss = history[-1]["loss"] if history else None
    summary.datasets = info.to_dict()["datasets"]
    summary.losses = {name: describe_loss(loss) for name, loss in losses.items()}
    if evaluation is not None and evaluation.best is not None:
        summary.best = evaluation.best
        summary.eval_during_training = _last_scores(trainer.state.log_history)
        if config.load_best_model_at_end and evaluation.best.get("path"):
            _load_weights(trainer.model, evaluation.best["path"])
            summary.final_is_best = True
    if trainer.is_world_process_zero():
        _save_final(trainer, config, context, summary, final, inference_length)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
    return StageResult(model_path=str(Path(final)), summary=summary)


run.validate = validate  # checked by the recipe loader

register_stage_type(
    StageType(
        name="train",
        config_class=TrainStageConfig,
        run=run,
        path_fields=("decontaminate_against", "eval_tasks"),
        summary_class=TrainSummary,
    )
)
