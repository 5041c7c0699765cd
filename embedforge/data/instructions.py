"""Task instructions as sentence-transformers *prompts* (for training) and model prompts (for evaluation/serving).

An instruction is a short task description (``"Given a query, retrieve documents that answer the query"``). It
is put into a template, by default KaLM-V2/Qwen's ``Instruct: {task}\\nQuery: {text}`` (KaLM-V2 Eq. 8; the
same format as e5-mistral and gte-Qwen2), and the part before ``{text}`` becomes a *prompt*: a prefix that
sentence-transformers prepends at tokenization time. We do not rewrite the texts, so that
``Pooling(include_prompt=False)`` can leave the instruction tokens out of mean pooling (sentence-transformers
tracks ``prompt_length`` for prompts), and the same dataset trains with or without instructions.

Where the prompt goes (KaLM-V2 §3.4, Table 1):

* asymmetric data (retrieval, pairs, triplets by default): on the query (``anchor``) only; documents get none;
* symmetric data (STS, NLI, example-based classification/clustering by default): on every text column, since
  both sides are the same sort of text. ``DatasetConfig.symmetric`` overrides the default.

Training: :func:`trainer_prompts` returns ``{dataset_name: {column: prompt}}`` for
``SentenceTransformerTrainingArguments(prompts=...)``; every dataset appears (``{}`` when it has no instruction)
because the collator requires every dataset of a nested prompts dict.

Evaluation: :func:`model_prompts` returns the prompts to store with the model (``model.prompts``, saved in
``config_sentence_transformers.json``), keyed the way mteb looks them up (``mteb.models.abs_encoder
.get_prompt_name``): ``"{task_name}-{query|document}"``, ``"{task_name}"``, ``"{task_type}-{query|document}"``,
``"{task_type}"``, then ``"query"``/``"document"``. How the instruction for an eval task is chosen:

1. an instruction given for the task *name* (``instructions={"Banking77Classification": "..."}``; the task type
   must be known, from ``task_types`` or a task directory's ``task.json``, to pick the key form);
2. otherwise an instruction given for its task *type* (``instructions={"Classification": "..."}``);
3. otherwise the default for its type, :data:`DEFAULT_TASK_TYPE_INSTRUCTIONS` (KaLM-V2 Tables 1 and 12; SEA
   Table 6 where KaLM has no generic one).

Retrieval-like types (:data:`ASYMMETRIC_TASK_TYPES`) get ``"{key}-query"`` (the prompt) and
``"{key}-document"`` (``""``: no prompt); other types get the bare key, which mteb uses for both sides.
mteb only honours task-name keys for tasks in its registry (it warns about and ignores other names); type keys
always work, which is why the defaults are per type.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from embedforge.data.config import DatasetConfig
from embedforge.errors import ConfigError

DEFAULT_TEMPLATE = "Instruct: {task}\nQuery: {text}"

_RETRIEVAL = "Given a query, retrieve documents that answer the query"
_SIMILAR = "Retrieve semantically similar text"

# MTEB task type -> default instruction.
DEFAULT_TASK_TYPE_INSTRUCTIONS: dict[str, str] = {
    "Retrieval": _RETRIEVAL,  # KaLM-V2 Table 1/12
    "Reranking": _RETRIEVAL,  # KaLM-V2 Table 12 ("Ranking")
    "STS": _SIMILAR,  # KaLM-V2 Table 1/12
    "PairClassification": _SIMILAR,  # KaLM-V2 Table 1/12
    "Summarization": "Retrieve semantically similar summaries",  # KaLM-V2 Table 12 (SummEval)
    "Classification": "Classify text into its appropriate category",  # SEA Table 6
    "Clustering": "Identify the topic or theme of the given texts",  # generic form of KaLM-V2 Table 12's
    "BitextMining": "Retrieve parallel sentences",  # SEA Table 6
}

# Task types whose queries and documents are different sorts of text: the instruction goes on queries only.
ASYMMETRIC_TASK_TYPES = frozenset({"Retrieval", "Reranking", "InstructionRetrieval", "InstructionReranking"})

# Training kind -> the MTEB task type whose default instruction suits it (for recipes that want defaults).
KIND_TASK_TYPES: dict[str, str] = {
    "retrieval": "Retrieval",
    "pairs": "Retrieval",
    "triplets": "Retrieval",
    "nli": "STS",
    "sts": "STS",
    "classification": "Classification",
    "clustering": "Clustering",
}

# When a dataset's number of negatives is not known up front, prompts are written for this many negative columns;
# keys for columns a dataset does not have are ignored by the collator.
_MAX_NEGATIVE_COLUMNS = 64


def format_prompt(instruction: str, template: str | None = None) -> str:
    """The prompt (prefix) for ``instruction``: the template up to ``{text}`` with ``{task}`` filled in.

    Raises:
        ConfigError: if the template does not end with ``{text}`` or has no ``{task}``.
    """
    template = DEFAULT_TEMPLATE if template is None else template
    if not template.endswith("{text}") or "{task}" not in template:
        raise ConfigError(f"prompt template must contain '{{task}}' and end with '{{text}}', got {template!r}")
    return template[: -len("{text}")].replace("{task}", instruction.strip())


def default_instruction(kind: str) -> str:
    """The default instruction for a training kind (that of its MTEB task type, see :data:`KIND_TASK_TYPES`)."""
    return DEFAULT_TASK_TYPE_INSTRUCTIONS[KIND_TASK_TYPES[kind]]


def dataset_prompts(config: DatasetConfig, columns: Sequence[str] | None = None) -> dict[str, str]:
    """``{column: prompt}`` for one dataset: the anchor only, or every text column when symmetric.

    Args:
        config: the dataset's config; no instruction gives ``{}``.
        columns: the dataset's training columns; ``None`` derives them from the config.
    """
    if not config.instruction:
        return {}
    prompt = format_prompt(config.instruction, config.template)
    if columns is None:
        columns = _expected_columns(config)
    text_columns = [c for c in columns if c not in ("score", "label", "dataset_name")]
    if not config.is_symmetric:
        text_columns = text_columns[:1]  # the query: anchor (InfoNCE) / sentence1 (CoSENT)
    return {column: prompt for column in text_columns}


def trainer_prompts(
    configs: Iterable[DatasetConfig], columns: Mapping[str, Sequence[str]] | None = None
) -> dict[str, dict[str, str]]:
    """The trainer's ``prompts`` argument: ``{dataset_name: {column: prompt}}`` for every dataset.

    Args:
        configs: the training datasets.
        columns: ``{dataset_name: column names}`` of the loaded datasets (e.g. ``{n: d.column_names for n, d in
            dataset_dict.items()}``); ``None`` derives them from the configs.
    """
    return {
        config.name: dataset_prompts(config, None if columns is None else columns[config.name]) for config in configs
    }


def model_prompts(
    instructions: Mapping[str, str] | None = None,
    *,
    task_types: Mapping[str, str] | None = None,
    template: str | None = None,
    include_defaults: bool = True,
) -> dict[str, str]:
    """Prompts to save with the model, keyed as mteb looks them up (see the module docstring).

    Args:
        instructions: instruction per MTEB task type (``"Classification"``) or per task name (``"Banking77Class
            ification"``); they override the defaults.
        task_types: task name -> MTEB task type, for the task names in ``instructions`` (e.g. from
            :func:`task_types_from_dirs`).
        template: the prompt template (default :data:`DEFAULT_TEMPLATE`).
        include_defaults: start from :data:`DEFAULT_TASK_TYPE_INSTRUCTIONS`.

    Returns:
        ``{key: prompt}``, with ``""`` for documents of retrieval-like types (no prompt).

    Raises:
        ConfigError: for a task name whose type is unknown.
    """
    # key -> (task type, instruction); a task type is its own key
    entries = {t: (t, i) for t, i in DEFAULT_TASK_TYPE_INSTRUCTIONS.items()} if include_defaults else {}
    for key, instruction in (instructions or {}).items():
        if key in DEFAULT_TASK_TYPE_INSTRUCTIONS or key in ASYMMETRIC_TASK_TYPES:
            entries[key] = (key, instruction)
        elif task_types and key in task_types:
            entries[key] = (task_types[key], instruction)
        else:
            raise ConfigError(
                f"instruction for {key!r}: not an MTEB task type, and its task type is unknown; "
                f"pass task_types={{{key!r}: '<type>'}} (types: {', '.join(sorted(DEFAULT_TASK_TYPE_INSTRUCTIONS))})"
            )
    prompts: dict[str, str] = {}
    for key, (task_type, instruction) in entries.items():
        prompt = format_prompt(instruction, template)
        if task_type in ASYMMETRIC_TASK_TYPES:
            prompts[f"{key}-query"] = prompt
            prompts[f"{key}-document"] = ""
        else:
            prompts[key] = prompt
    if "Retrieval" in entries:  # mteb's last fallback, for query/document encodings of any other task type
        prompts["query"] = prompts["Retrieval-query"]
        prompts["document"] = ""
    return prompts


def task_types_from_dirs(task_dirs: Iterable[str]) -> dict[str, str]:
    """``{task name: task type}`` read from the ``task.json`` of each evaluation task directory."""
    return {name: task_type for name, (task_type, _) in _task_meta(task_dirs).items()}


def task_instructions_from_dirs(task_dirs: Iterable[str]) -> dict[str, str]:
    """``{task name: instruction}`` from the ``instruction`` key of each task directory's ``task.json`` (when set).

    ``task_dirs`` may name task directories or folders of them (like ``eval.task_root``).
    """
    return {name: instruction for name, (_, instruction) in _task_meta(task_dirs).items() if instruction}


def evaluation_prompts(
    task_dirs: Iterable[str], instructions: Mapping[str, str] | None = None, template: str | None = None
) -> dict[str, str]:
    """The prompts an instruction-trained model is saved with: per-task instructions from ``task.json``, then
    ``instructions`` (task name or MTEB type -> instruction; a recipe's ``eval.instructions``) over them, then the
    per-type defaults (see :func:`model_prompts`)."""
    task_dirs = list(task_dirs)
    merged = {**task_instructions_from_dirs(task_dirs), **(instructions or {})}
    return model_prompts(merged, task_types=task_types_from_dirs(task_dirs), template=template)


def _task_meta(task_dirs: Iterable[str]) -> dict[str, tuple[str, str | None]]:
    from pathlib import Path

    from embedforge.utils.io import read_json

    found: dict[str, tuple[str, str | None]] = {}
    for entry in task_dirs:
        path = Path(entry)
        directories = [path] if (path / "task.json").is_file() else sorted(p.parent for p in path.glob("*/task.json"))
        for directory in directories:
            meta = read_json(directory / "task.json")
            found[meta.get("name", directory.name)] = (meta["type"], meta.get("instruction"))
    return found


def _expected_columns(config: DatasetConfig) -> list[str]:
    if config.loss_name == "cosent":
        return ["sentence1", "sentence2", "score"]
    count = config.negatives_wanted
    count = _MAX_NEGATIVE_COLUMNS if count is None else count
    return ["anchor", "positive"] + [f"negative_{k + 1}" for k in range(count)]
