"""``DatasetConfig``: one training dataset of a recipe (YAML mapping -> dataclass).

A recipe lists its training datasets; each entry becomes one :class:`DatasetConfig`. Unknown keys
and wrong types are :class:`~embedforge.errors.ConfigError` naming the key (``datasets[2].colums:
unknown key. Did you mean 'columns'?``). Every field has a default except ``name``, ``path`` and
``kind``; the defaults that depend on the kind (``symmetric``, ``in_batch_negatives``, ``loss``,
``num_negatives``) are left as ``None`` here and resolved by :meth:`DatasetConfig.resolved`, so the
saved resolved config shows what was actually used.

YAML shape of one entry (all keys but the first three optional)::

    - name: debian                      # DatasetDict key; also the key of its loss and prompts
      path: /data/train/debian_descriptions/pairs.jsonl.gz
      kind: pairs                       # pairs|triplets|nli|sts|classification|clustering|retrieval
      format: jsonl                     # jsonl|parquet|beir|disk; detected from the path if omitted
      columns: {anchor: summary, positive: description}
      instruction: Given a package summary, retrieve its description
      template: null                    # default "Instruct: {task}\\nQuery: {text}"
      symmetric: false
      in_batch_negatives: true
      loss: infonce                     # infonce | cosent (cosent: sts only)
      weight: null                      # sampling weight override
      max_rows: 3000
      num_negatives: null
      negatives_fill: drop              # drop | random
      sts_threshold: 0.8
      score_range: null                 # e.g. [0, 5]; inferred from the data if omitted
      label_map: null                   # NLI: file label -> entailment|neutral|contradiction
      split: train
      on_empty: error                   # error | skip
      seed: null
      decontaminate: true
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from embedforge.errors import ConfigError, did_you_mean
from embedforge.utils.config import dataclass_from_dict

Kind = Literal["pairs", "triplets", "nli", "sts", "classification", "clustering", "retrieval"]
LossName = Literal["infonce", "cosent"]

KINDS: tuple[str, ...] = typing.get_args(Kind)
LOSSES: tuple[str, ...] = typing.get_args(LossName)
FORMATS: tuple[str, ...] = ("jsonl", "parquet", "beir", "disk")

# Kinds whose two sides are the same sort of text: the instruction goes on every text column (KaLM-V2 §3.4,
# Table 1: STS, pair classification and the example-based classification/clustering rows are symmetric).
_SYMMETRIC_BY_DEFAULT = {"nli", "sts", "classification", "clustering"}
# Kinds trained without in-batch negatives by default: none. Example-based labels share classes across rows, so
# other rows' positives are often false negatives — which is why Seed1.5 trains non-retrieval data on hard
# negatives only and KaLM-V2 keeps its fine-tuning batches small. Our classification/clustering rows carry their
# class ids instead, and InfoNCE masks same-class candidates (mask_same_class), so every other in-batch text is a
# true negative (ours; measured in docs/RESULTS.md "recipe-vs-st": hard negatives only lost 6 points of section
# clustering and 2.5 of Banking77 to a plain MNRL script). Paper recipes that follow Seed1.5 set it per dataset.
_NO_IN_BATCH_NEGATIVES: set[str] = set()
# Hard negatives built per row when num_negatives is not given (None = as many as every row has).
_DEFAULT_NUM_NEGATIVES: dict[str, int | None] = {
    "pairs": 0,
    "triplets": None,
    "nli": 1,
    "sts": 0,
    "classification": 1,
    "clustering": 1,
    "retrieval": None,
}


@dataclass
class DatasetConfig:
    """One training dataset: where it is, what kind of data it holds, and how to turn it into training rows.

    Attributes are documented one per line below; see the module docstring for the YAML shape.
    """

    name: str  # unique name: DatasetDict key, key of the dataset's loss and prompts
    path: str  # a jsonl/jsonl.gz/parquet file, a BEIR directory, or a `datasets.save_to_disk` directory
    kind: str  # source kind: pairs|triplets|nli|sts|classification|clustering|retrieval
    format: str | None = None  # jsonl|parquet|beir|disk; None = detect from the path
    columns: dict[str, Any] = field(default_factory=dict)  # canonical name -> file column (a list for negatives)
    instruction: str | None = None  # task description put in the template; None = no instruction
    template: str | None = None  # prompt template with {task} and a trailing {text}; None = KaLM/Qwen default
    symmetric: bool | None = None  # instruction on every text column; None = kind default (sts/nli/cls/clu: yes)
    in_batch_negatives: bool | None = None  # None = kind default (yes; labelled kinds mask same-class candidates)
    loss: str | None = None  # infonce|cosent; None = cosent for sts, infonce otherwise
    weight: float | None = None  # sampling weight override (probability scale); None = from size/temperature
    max_rows: int | None = None  # cap on training rows after conversion (seeded random subset); None = all
    num_negatives: int | None = None  # hard negatives per row; None = kind default (see _DEFAULT_NUM_NEGATIVES)
    negatives_fill: str = "drop"  # rows with fewer negatives than num_negatives: drop | random (fill from others)
    sts_threshold: float = 0.8  # infonce on sts: normalized score above this -> two positive pairs (KaLM: >4/5)
    score_range: list[float] | None = None  # sts score [min, max] for normalization; None = infer ([0,1] or [0,5])
    label_map: dict[Any, str] | None = None  # nli: file label -> entailment|neutral|contradiction; None = SNLI
    split: str = "train"  # BEIR qrels/<split>.tsv, or the split of a saved DatasetDict
    on_empty: str = "error"  # empty or missing text: error (names file:line) | skip (counted in the summary)
    seed: int | None = None  # per-dataset seed; None = the global seed
    decontaminate: bool = True  # drop rows whose texts occur in the evaluation data (when eval dirs are given)
    label_names: bool = False  # classification/clustering: rows (text, its label's name, other labels' names)
    # instead of example-based rows (KaLM-V2 §3.4.2; underscores in labels read as spaces; asymmetric by default)

    def __post_init__(self) -> None:
        where = f"dataset {self.name!r}" if isinstance(self.name, str) and self.name else "dataset"
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError(f"{where}: 'name' must be a non-empty string, got {self.name!r}")
        if self.name == "dataset_name" or self.name.startswith("__"):
            raise ConfigError(f"{where}: 'name' {self.name!r} is reserved; choose another name")
        if not isinstance(self.path, str) or not self.path:
            raise ConfigError(f"{where}: 'path' must be a non-empty string, got {self.path!r}")
        _check_choice(where, "kind", self.kind, KINDS)
        if self.format is not None:
            _check_choice(where, "format", self.format, FORMATS)
        if self.loss is not None:
            _check_choice(where, "loss", self.loss, LOSSES)
            if self.loss == "cosent" and self.kind != "sts":
                raise ConfigError(
                    f"{where}: loss 'cosent' needs scored pairs (kind 'sts'), got kind {self.kind!r}; "
                    "use loss: infonce"
                )
        _check_choice(where, "negatives_fill", self.negatives_fill, ("drop", "random"))
        if self.label_names and self.kind not in ("classification", "clustering"):
            raise ConfigError(f"{where}: 'label_names' needs labelled texts (kind classification or clustering)")
        _check_choice(where, "on_empty", self.on_empty, ("error", "skip"))
        if not isinstance(self.columns, Mapping):
            raise ConfigError(f"{where}: 'columns' must be a mapping of canonical name -> file column")
        for key, value in self.columns.items():
            ok = isinstance(value, str) or (
                isinstance(value, list) and value and all(isinstance(v, str) for v in value)
            )
            if not isinstance(key, str) or not ok:
                raise ConfigError(
                    f"{where}: columns.{key}: expected a column name (or a list of names for negatives), got {value!r}"
                )
        if self.weight is not None and not self.weight > 0:
            raise ConfigError(f"{where}: 'weight' must be > 0, got {self.weight!r}")
        if self.max_rows is not None and self.max_rows < 1:
            raise ConfigError(f"{where}: 'max_rows' must be >= 1, got {self.max_rows!r}")
        if self.num_negatives is not None and self.num_negatives < 0:
            raise ConfigError(f"{where}: 'num_negatives' must be >= 0, got {self.num_negatives!r}")
        if not 0.0 <= self.sts_threshold < 1.0:
            raise ConfigError(f"{where}: 'sts_threshold' is a normalized score in [0, 1), got {self.sts_threshold!r}")
        if self.score_range is not None:
            if len(self.score_range) != 2 or not self.score_range[0] < self.score_range[1]:
                raise ConfigError(
                    f"{where}: 'score_range' must be [min, max] with min < max, got {self.score_range!r}"
                )
        if self.label_map is not None:
            for key, value in self.label_map.items():
                _check_choice(where, f"label_map.{key}", value, ("entailment", "neutral", "contradiction"))
        if self.template is not None and (not self.template.endswith("{text}") or "{task}" not in self.template):
            raise ConfigError(
                f"{where}: 'template' must contain '{{task}}' and end with '{{text}}' (prompts are prefixes), "
                f"got {self.template!r}"
            )

    # ------------------------------------------------------------------ kind-dependent defaults
    @property
    def is_symmetric(self) -> bool:
        """Whether the instruction goes on every text column (resolved default)."""
        if self.symmetric is not None:
            return self.symmetric
        return self.kind in _SYMMETRIC_BY_DEFAULT and not self.label_names  # a label name is not a text of the kind

    @property
    def loss_name(self) -> str:
        """The loss family for this dataset (resolved default)."""
        if self.loss is not None:
            return self.loss
        return "cosent" if self.kind == "sts" else "infonce"

    @property
    def uses_in_batch_negatives(self) -> bool:
        """Whether the loss should use other rows of the batch as negatives (resolved default)."""
        if self.loss_name == "cosent":
            return False
        if self.in_batch_negatives is not None:
            return self.in_batch_negatives
        return self.kind not in _NO_IN_BATCH_NEGATIVES

    @property
    def negatives_wanted(self) -> int | None:
        """Hard negatives per row (resolved default; None = as many as every row has)."""
        if self.num_negatives is not None:
            return self.num_negatives
        return _DEFAULT_NUM_NEGATIVES[self.kind]

    def resolved(self) -> DatasetConfig:
        """A copy with every kind-dependent default filled in (what gets logged and saved)."""
        return dataclasses.replace(
            self,
            symmetric=self.is_symmetric,
            loss=self.loss_name,
            in_batch_negatives=self.uses_in_batch_negatives,
            num_negatives=self.negatives_wanted,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (for YAML/JSON)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "dataset") -> DatasetConfig:
        """Build from a YAML mapping; unknown keys and wrong types are errors naming ``where.key``.

        Args:
            data: the mapping read from YAML.
            where: location prefix for error messages, e.g. ``"stages.finetune.datasets[2]"``.
        """
        return dataclass_from_dict(cls, data, where)


def load_dataset_configs(
    entries: list[Mapping[str, Any]] | Mapping[str, Mapping[str, Any]], where: str = "datasets"
) -> list[DatasetConfig]:
    """Build :class:`DatasetConfig` objects from YAML: a list of entries, or a mapping ``name -> entry``.

    Duplicate names are an error.
    """
    if isinstance(entries, Mapping):
        labelled = []
        for name, entry in entries.items():
            if not isinstance(entry, Mapping):
                raise ConfigError(f"{where}.{name}: expected a mapping, got {type(entry).__name__}")
            if entry.get("name", name) != name:
                raise ConfigError(f"{where}.{name}: 'name' {entry['name']!r} differs from its key {name!r}")
            labelled.append((f"{where}.{name}", {**entry, "name": name}))
    elif isinstance(entries, list):
        labelled = [(f"{where}[{i}]", item) for i, item in enumerate(entries)]
    else:
        raise ConfigError(f"{where}: expected a list of dataset entries, got {type(entries).__name__}")
    configs = [DatasetConfig.from_dict(item, where=label) for label, item in labelled]
    check_unique_names(configs)
    return configs


def check_unique_names(configs: list[DatasetConfig]) -> None:
    """Raise :class:`ConfigError` when two datasets share a name."""
    seen: set[str] = set()
    for config in configs:
        if config.name in seen:
            raise ConfigError(f"two training datasets are named {config.name!r}; dataset names must be unique")
        seen.add(config.name)


def _check_choice(where: str, key: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{where}: {key} {value!r} is not valid.{did_you_mean(str(value), choices)}")
