"""Recipe schema: YAML -> nested dataclasses, strict (unknown keys and wrong types name the key).

A recipe is a model, a seed, an output folder and an ordered mapping of **stages**. Each stage has a
``type`` (``train``, ``mine``, ``merge``, ``eval``, ...) whose config class and ``run`` function are
registered in :data:`STAGE_TYPES`; a stage writes everything to ``<output_dir>/<stage name>/``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from embedforge.data.config import DatasetConfig
from embedforge.errors import ConfigError
from embedforge.losses.objective import ObjectiveConfig
from embedforge.mining.miner import MiningOptions
from embedforge.models.lora import LoraConfig
from embedforge.utils.registry import Registry


@dataclass
class ModelConfig:
    """The starting model."""

    base: str  # offline preset name (see `embedforge models`) or a local model folder
    max_seq_length: int | None = None  # maximum tokens per text (None: the model's own)
    pooling: str | None = None  # plain Hugging Face folders: mean (default) | cls | lasttoken | ...
    include_prompt: bool = True  # False: instruction tokens are left out of the pooled mean
    normalize: bool = True  # plain Hugging Face folders: L2-normalize the embedding
    bidirectional: bool | None = None  # decoders: true drops the causal mask (default), false keeps it
    dtype: str | None = None  # decoder weights dtype: float32 (None) | bfloat16 | float16 | auto
    padding_side: str | None = None  # decoder tokenizer padding: right (None: as saved; plain folders right) | left
    attn_implementation: str | None = None  # attention kernel: sdpa (None) | eager | flash_attention_2
    lora: LoraConfig | None = None  # train LoRA adapters instead of all weights (None: full fine-tuning)

    def __post_init__(self) -> None:
        if self.padding_side not in (None, "right", "left"):
            raise ConfigError(f"padding_side: must be 'right' or 'left', got {self.padding_side!r}")
        if self.max_seq_length is not None and self.max_seq_length < 1:
            raise ConfigError(f"max_seq_length: must be a positive integer, got {self.max_seq_length}")


@dataclass
class EvalConfig:
    """Evaluation after the recipe (and of the base model, for the comparison table)."""

    tasks: list[str] = field(default_factory=list)  # task directories
    task_root: str | None = None  # every task directory under this folder
    dims: list[int] | None = None  # Matryoshka dimensions (None: full)
    batch_size: int = 32  # encoding batch size
    compare_base: bool = True  # also evaluate the base model and print both rows
    instructions: dict[str, str] = field(default_factory=dict)  # task name or MTEB type -> instruction saved as
    # the model's prompt for it (over the task.json `instruction`; instruction-trained recipes only)


@dataclass(kw_only=True)
class TrainStageConfig(ObjectiveConfig):
    """A contrastive training stage (Hugging Face Trainer via sentence-transformers underneath).

    The objective keys (``loss``, ``cosent``, ``loss_overrides``, ``gradcache_mini_batch``, ``matryoshka``,
    ``router_aux_loss_coef``) are :class:`~embedforge.losses.objective.ObjectiveConfig`'s.
    """

    datasets: list[DatasetConfig]  # training datasets (see embedforge.data.DatasetConfig)
    type: str = "train"
    init: str | None = (
        None  # start from: None = previous stage's model (first stage: the base), "base", a stage, a folder
    )
    teacher: str | None = None  # distillation (SEA's SDM): frozen teacher whose embeddings become the label column
    teacher_batch_size: int = 64  # batch size for encoding the training texts with the teacher
    batch_size: int = 32  # per-device batch (global batch with trainer_args.accelerator_config.split_batches)
    max_seq_length: int | None = None  # truncate training texts to this many tokens (the saved model keeps its own)
    learning_rate: float = 2e-5  # AdamW peak learning rate
    weight_decay: float = 0.01  # AdamW weight decay
    warmup_ratio: float = 0.1  # linear warm-up share of the steps
    scheduler: str = "cosine"  # learning-rate schedule after warm-up (transformers name)
    epochs: float = 1.0  # passes over the (weighted) data
    max_steps: int | None = None  # stop after this many optimizer steps (overrides epochs)
    sampling_temperature: float = 1.0  # dataset sampling p_i ∝ n_i^(1/T); explicit dataset weights override
    length_grouping: bool = True  # batch texts of similar length together (less padding, faster)
    group_batches: int = 64  # batches per length group (larger: less padding, less randomness)
    bf16: str | bool = "auto"  # bf16 mixed precision: auto = where the device supports it (CUDA with bf16)
    gradient_checkpointing: bool = False  # recompute activations in backward (memory for compute)
    gradient_accumulation_steps: int = 1  # optimizer step every N batches (in-batch negatives stay per batch)
    save_steps: int = 500  # checkpoint every N steps (always one at the end)
    save_total_limit: int | None = 2  # keep the newest N checkpoints
    logging_steps: int = 10  # log loss, learning rate and samples/s every N steps
    decontaminate_against: list[str] | None = None  # eval task dirs/roots whose texts are removed (None: the
    # recipe's eval tasks, so decontamination is on wherever the recipe evaluates; []: this stage opts out)
    decontaminate_near_duplicates: float | None = None  # also near duplicates: word-3-gram Jaccard >= this (MinHash)
    trainer_args: dict[str, Any] = field(default_factory=dict)  # passed to SentenceTransformerTrainingArguments


@dataclass
class EvalStageConfig:
    """Evaluate a stage's model (or the base) on task directories; results land in the stage folder."""

    type: str = "eval"
    model: str | None = None  # None = the previous stage's model; "base"; a stage name; a folder
    tasks: list[str] = field(default_factory=list)
    task_root: str | None = None
    dims: list[int] | None = None
    batch_size: int = 32


@dataclass(kw_only=True)
class MineStageConfig(MiningOptions):
    """Mine hard negatives for each dataset with a model of the recipe (see :mod:`embedforge.mining`).

    The mining keys (``range_min``, ``range_max``, ``num_negatives``, ``sampling``, the margins, ...) are
    :class:`~embedforge.mining.miner.MiningOptions`'s; the stage passes itself whole as the options.
    """

    datasets: list[DatasetConfig]  # sources of (anchor, positive) pairs: pairs|triplets|retrieval|nli|sts
    type: str = "mine"
    model: str | None = None  # None = the previous stage's model; "base"; a stage name; a folder
    corpus: str | list[str] | None = None  # extra candidate texts for every dataset: jsonl (text), BEIR dir, .txt
    corpus_column: str = "text"  # jsonl field holding a corpus text
    seed: int | None = None  # sampling seed; None = the recipe's seed


@dataclass
class MergeStageConfig:
    """Average the parameters of models of the recipe (see :mod:`embedforge.merging`)."""

    models: list[str]  # stage names, "<stage>/checkpoint-N", "base", or model folders (at least two)
    type: str = "merge"
    method: str | None = None  # uniform | weighted | cocktail; None = weighted if weights are given, else uniform
    weights: list[float] | None = None  # weighted: one per model (normalized to sum to 1)
    datasets: list[DatasetConfig] = field(default_factory=list)  # cocktail: a few target-task examples (max_rows)
    temperature: float = 5.0  # cocktail: T in softmax(-loss / T) (LM-Cocktail's default)


@dataclass
class StageType:
    """A registered stage type: its config dataclass and its ``run(config, context) -> StageResult``."""

    name: str
    config_class: type
    run: Callable[..., Any]
    path_fields: tuple[str, ...] = ()  # config keys holding paths (resolved relative to the recipe file)
    produces_model: bool = True  # whether the stage's output is a model later stages start from
    summary_class: type | None = None  # its StageSummary dataclass (how stage.json is read back on --resume)


STAGE_TYPES: Registry[StageType] = Registry("stage type")


def register_stage_type(stage_type: StageType) -> StageType:
    """Add a stage type; names are unique."""
    return STAGE_TYPES.register(stage_type.name, stage_type)


@dataclass
class Recipe:
    """A whole recipe: model, seed, output folder, stages (run in order), final evaluation."""

    name: str  # recipe name (model card, default output folder)
    model: ModelConfig
    stages: dict[str, Any]  # stage name -> stage config (typed by its `type`)
    output_dir: str | None = None  # None: runs/<name> (relative to the current directory)
    seed: int = 42  # global seed (data order, initialisation, dropout, mixing)
    description: str = ""  # one paragraph for the model card
    eval: EvalConfig | None = None  # evaluation after the last stage
    source: str | None = None  # the YAML file this came from (set by the loader)
