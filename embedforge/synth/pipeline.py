"""Documents -> synthetic (query, document) training pairs: generate, filter, decontaminate, mine.

Seed1.5-Embedding's general-purpose synthetic data: an LLM writes diverse queries for the documents of a corpus,
only highly relevant pairs are kept, and hard negatives are mined for the kept pairs. :func:`synthesize` runs

1. **generate**: for each document (a seeded subset of ``max_docs``), ``queries_per_doc`` replies, the query types
   taken in turn from ``templates`` (question, keywords, reasoning...), starting at a place the document's id
   picks (so one query per document still covers every type); each reply is cleaned into one query
   (:func:`clean_query`; ``strip_lead_ins`` also cuts "The document supports the finding that" lead-ins when the
   rows are built, so the option can be toggled on an existing log). Replies stream into the *generation log*
   ``<output>.generations.jsonl``, one line per finished document, appended and flushed after every batch: a
   killed run loses at most one batch, and a rerun skips the documents already in the log (resume). The log's
   first line holds the settings that shape the replies; a rerun with other settings is refused rather than
   mixing two kinds of queries;
2. **decontaminate** (``decontaminate_against``): pairs whose query or document is an evaluation text are dropped
   (:mod:`embedforge.data.decontaminate`, as for any training data);
3. **filter** (``filter_top_k``): round-trip consistency under the embedding model ``filter_model``: keep a pair
   when its document ranks in the top k of the whole corpus for its query; ``judge_threshold`` also asks the
   generator for a pointwise relevance score (:mod:`embedforge.synth.relevance`). Every row records its
   ``filter_rank`` and ``filter_score`` (computed even with the filter off, when a model is given);
4. **mine** (``num_negatives`` > 0): hard negatives for the kept pairs from the corpus with the existing miner
   (:func:`embedforge.mining.mine_hard_negatives`, the false-negative margin included);
5. **write** ``<output>`` atomically (jsonl: ``anchor`` = query, ``positive`` = document, ``negative_1..n``, and the
   provenance columns ``doc_id, query_type, template, generator, seed, filter_rank, filter_score, judge_score``)
   and ``<output>.stats.json``. A recipe reads it as ``kind: pairs`` (or ``triplets`` with negatives).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embedforge.errors import ConfigError, DataError
from embedforge.synth.corpus import Document, read_documents, sample_documents
from embedforge.synth.generators import GenerationReport, GeneratorConfig, load_generator
from embedforge.synth.templates import QUERY_TYPES, Template, load_template, load_templates

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from embedforge.synth.generators import Generator

logger = logging.getLogger(__name__)

LOG_SUFFIX = ".generations.jsonl"
STATS_SUFFIX = ".stats.json"
_PREFIX = re.compile(
    r"^\s*(?:[-*•]|\d+[.)]|(?:search\s+)?(?:query|question|keywords?|q)\s*:)\s*", re.IGNORECASE
)  # list markers and "Query:"-style labels a small LLM puts before its answer
_LABEL = re.compile(r"^\s*(?:claim|document|answer)\s*:\s*", re.IGNORECASE)  # with strip_lead_ins
# Lead-ins that talk about the source instead of stating its content ("The document supports the finding that X",
# "According to the document, X"): a reader's query or claim never mentions "the document". Only a lead-in where
# the source reports something (a verb of _VERB) and that ends in "that" / ":" within a few words or names "a
# finding / the claim" and goes on with "by ...ing" / "of", or "according to / based on the document,", is cut,
# so a sentence whose subject really is the document ("The document discusses ...") is kept whole.
_SOURCE = r"(?:the|this|a)\s+(?:document|text|passage|abstract|article|paper|study)(?:'s\s+\w+)?"
_VERB = (
    r"(?:supports?|suggests?|shows?|states?|concludes?|indicates?|highlights?|demonstrates?|finds|argues?|claims?"
    r"|reports?|provides?|reveals?|proposes?|confirms?|explains?|describes?|notes?|says|mentions?|implies)"
)  # what a source does to a finding; "the paper that introduced transformers" is a query, not a lead-in
_LEAD_IN = re.compile(
    rf"^(?:{_SOURCE}\s+{_VERB}\s+(?:[\w,-]+\s+){{0,6}}?(?:that|:)\s+"  # "The document supports the finding that X"
    rf"|{_SOURCE}\s+{_VERB}\s+(?:a|the)\s+(?:finding|claim|conclusion|hypothesis|statement)(?:\s+in\s+plain\s+words)?"
    r",?\s+(?:by\s+\w+ing\s+|of\s+|about\s+|on\s+)"  # "... supports a finding by describing X" / "of X"
    rf"|(?:according\s+to|based\s+on|in)\s+{_SOURCE}\s*,\s*)",  # "According to the document, X"
    re.IGNORECASE,
)


@dataclass
class SynthConfig:
    """Everything :func:`synthesize` needs; the CLI flags and the recipe stage map onto these fields."""

    corpus: str  # jsonl / jsonl.gz / parquet file or BEIR directory
    output: str  # OUT.jsonl (the generation log and stats land beside it)
    text_column: str = "text"  # the column of a document's text (a pairs file: e.g. description)
    id_column: str | None = None  # None: _id / id / doc_id when present, else a hash of the text
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)  # the LLM that writes (and judges)
    templates: list[str] = field(default_factory=lambda: list(QUERY_TYPES))  # query types: names, .txt, folders
    queries_per_doc: int = 3  # replies per document (query types in turn)
    max_docs: int | None = None  # a seeded random subset of this many documents (None: all)
    max_doc_chars: int = 2000  # a document is cut to this many characters in the prompt
    docs_per_batch: int = 16  # documents per generate() call (and per log flush)
    seed: int = 42  # document subset and sampling seeds
    filter_model: str | None = "all-MiniLM-L6-v2"  # embedding model of the round-trip filter (None: no filter)
    filter_top_k: int | None = 3  # keep pairs whose document ranks < k for its query (None: keep all, still score)
    query_prompt: str = ""  # prompt put on queries when filtering and mining (the training instruction)
    judge_threshold: float | None = None  # also keep only pairs an LLM judge scores >= this (None: no judge)
    judge_template: str = "judge_pointwise"  # the judge's template
    num_negatives: int = 0  # hard negatives mined per kept pair (0: pairs only)
    range_min: int = 10  # mining rank window (see embedforge mine)
    range_max: int = 50
    relative_margin: float | None = 0.05  # mining false-negative filter
    decontaminate_against: list[str] = field(default_factory=list)  # eval task directories
    batch_size: int = 64  # embedding batch size (filter, mining)
    strip_lead_ins: bool = False  # cut "The document supports the finding that" (see clean_query); off: no gain
    overwrite: bool = False  # start over: delete the generation log of an earlier run

    def __post_init__(self) -> None:
        if isinstance(self.generator, dict):
            self.generator = GeneratorConfig(**self.generator)
        positive = {
            "queries_per_doc": self.queries_per_doc,
            "docs_per_batch": self.docs_per_batch,
            "max_doc_chars": self.max_doc_chars,
            "batch_size": self.batch_size,
        }
        for name, value in positive.items():
            if value < 1:
                raise ConfigError(f"{name}: must be a positive integer, got {value}")
        if self.max_docs is not None and self.max_docs < 1:
            raise ConfigError(f"max_docs: must be a positive integer or None, got {self.max_docs}")
        if self.filter_top_k is not None and self.filter_top_k < 1:
            raise ConfigError(f"filter_top_k: must be >= 1 or None (filter off), got {self.filter_top_k}")
        if self.filter_top_k is not None and self.filter_model is None:
            raise ConfigError("filter_top_k needs filter_model (the embedding model that ranks the corpus)")
        if self.num_negatives < 0:
            raise ConfigError(f"num_negatives: must be >= 0, got {self.num_negatives}")
        if self.num_negatives and self.filter_model is None:
            raise ConfigError("num_negatives > 0 needs filter_model (the model that mines the negatives)")


@dataclass
class SynthResult:
    """What :func:`synthesize` wrote and counted."""

    output: Path
    rows: int
    stats: dict[str, Any]


def clean_query(reply: str | None, max_chars: int = 300, *, lead_ins: bool = False) -> str | None:
    """The query in an LLM reply: its first non-empty line without list markers, labels or quotes.

    With ``lead_ins``, also without "Claim:" / "Document:" labels and a lead-in about the source ("The document
    supports the finding that X" -> "X", "According to the document, X" -> "X"), repeated until nothing changes,
    so a cleaned query cleans to itself. Returns None for a reply with no usable query (empty, shorter than 3
    characters, longer than ``max_chars``).
    """
    if not reply:
        return None
    for line in reply.splitlines():
        text, cut = _unwrap(line), False
        while lead_ins:  # "Document: Document: The document shows that X" peels down to "X"
            unlabelled = _LABEL.sub("", text)
            stripped = _LEAD_IN.sub("", unlabelled)
            cut = cut or stripped != unlabelled
            stripped = _unwrap(stripped)
            if stripped == text:
                break
            text = stripped
        if text:
            text = " ".join(text.split())
            first = text.split(" ", 1)[0]
            if cut and first.islower():  # the sentence that followed the lead-in starts with a capital
                text = text[0].upper() + text[1:]
            return text if 3 <= len(text) <= max_chars else None
    return None


def _unwrap(text: str) -> str:
    """``text`` without a list marker or "Query:" label in front and the quotes or bold marks around it."""
    return _PREFIX.sub("", text.strip()).strip().strip("\"'`*“”").strip()


def synthesize(
    config: SynthConfig,
    *,
    generator: Generator | None = None,
    model: SentenceTransformer | None = None,
    progress: bool = True,
) -> SynthResult:
    """Run the pipeline of the module docstring; ``generator`` / ``model`` override the configured ones.

    Raises:
        ConfigError: bad options, or a generation log written with other settings.
        DataError: unreadable corpus, no pair left.
    """
    started = time.perf_counter()
    output = Path(config.output)
    templates = load_templates(config.templates)
    corpus = read_documents(config.corpus, text_column=config.text_column, id_column=config.id_column)
    documents = sample_documents(corpus, config.max_docs, config.seed)
    logger.info(
        "synth: %d of %d documents of %s, %d queries each (%s)",
        len(documents),
        len(corpus),
        config.corpus,
        config.queries_per_doc,
        ", ".join(t.name for t in templates),
    )
    generator = generator or load_generator(config.generator)
    generation = generate_queries(config, documents, templates, generator, output, progress=progress)
    if generation.documents_failed:
        logger.warning(
            "synth: %d documents got no reply (%s); rerun the same command to retry them",
            generation.documents_failed,
            generation.last_error,
        )
    log = read_generation_log(log_path(output))
    wanted = {d.id for d in documents}
    by_id = {d.id: d for d in corpus}
    rows: list[dict[str, Any]] = []
    for record in log.values():
        if record["doc_id"] not in wanted:
            continue
        document = by_id[record["doc_id"]]
        for item in record["queries"]:
            query = item["query"]
            if config.strip_lead_ins:  # the log keeps the plainly cleaned query: toggling the option reuses it
                query = clean_query(query, lead_ins=True)
                if query is None:
                    continue
            rows.append(
                {
                    "anchor": query,
                    "positive": document.text,
                    "doc_id": document.id,
                    "query_type": item["template"],
                    "template": item["template_file"],
                    "generator": record["generator"],
                    "seed": item["seed"],
                }
            )
    stats: dict[str, Any] = {"generation": asdict(generation), "pairs_generated": len(rows)}
    rows = _dedupe(rows)
    stats["pairs_unique"] = len(rows)
    if config.decontaminate_against:
        rows, stats["decontaminated"] = _decontaminate(rows, config.decontaminate_against)
    if config.filter_model is not None and rows:
        from embedforge.models import load_model
        from embedforge.synth.relevance import round_trip_ranks

        model = model or load_model(config.filter_model)
        index = {d.id: i for i, d in enumerate(corpus)}
        ranks, scores = round_trip_ranks(
            model,
            [r["anchor"] for r in rows],
            [index[r["doc_id"]] for r in rows],
            [d.text for d in corpus],
            query_prompt=config.query_prompt,
            batch_size=config.batch_size,
        )
        for row, rank, score in zip(rows, ranks, scores, strict=True):
            row["filter_rank"], row["filter_score"] = rank, round(score, 6)
        if config.filter_top_k is not None:
            before = len(rows)
            rows = [r for r in rows if r["filter_rank"] < config.filter_top_k]
            stats["filter"] = {"top_k": config.filter_top_k, "kept": len(rows), "dropped": before - len(rows)}
            logger.info(
                "synth: round-trip filter (top %d) kept %d of %d pairs", config.filter_top_k, len(rows), before
            )
    if config.judge_threshold is not None and rows:
        from embedforge.synth.relevance import judge_pairs

        judge = load_template(config.judge_template, "pointwise")
        judged = judge_pairs(
            generator,
            judge,
            [(r["anchor"], r["positive"]) for r in rows],
            seed=config.seed,
            max_doc_chars=config.max_doc_chars,
        )
        for row, score in zip(rows, judged, strict=True):
            row["judge_score"] = score
        before = len(rows)
        rows = [r for r in rows if r["judge_score"] is not None and r["judge_score"] >= config.judge_threshold]
        stats["judge"] = {"threshold": config.judge_threshold, "kept": len(rows), "dropped": before - len(rows)}
    if not rows:
        raise DataError(
            "no synthetic pair left (generated, deduplicated, decontaminated and filtered: "
            f"{json.dumps({k: v for k, v in stats.items() if k != 'generation'})})",
            config.corpus,
            hint="more documents or queries per document, a looser filter_top_k, or check the generator's replies "
            f"in {log_path(output)}",
        )
    if config.num_negatives:
        rows, stats["mining"] = _mine(rows, [d.text for d in corpus], config, model)
    _write_rows(rows, output)
    stats["rows"] = len(rows)
    stats["seconds"] = round(time.perf_counter() - started, 1)
    stats["settings"] = _settings(config, templates, generator)
    from embedforge.utils.io import atomic_write_json

    atomic_write_json(stats_path(output), stats)
    logger.info("synth: wrote %s (%d rows)", output, len(rows))
    return SynthResult(output, len(rows), stats)


# --------------------------------------------------------------------------------------------- generation
def log_path(output: str | os.PathLike[str]) -> Path:
    """The generation log of an output file: ``OUT.jsonl`` -> ``OUT.generations.jsonl``."""
    output = Path(output)
    return output.with_name(output.name.removesuffix(".jsonl") + LOG_SUFFIX)


def stats_path(output: str | os.PathLike[str]) -> Path:
    """The stats file of an output file: ``OUT.jsonl`` -> ``OUT.stats.json``."""
    output = Path(output)
    return output.with_name(output.name.removesuffix(".jsonl") + STATS_SUFFIX)


def read_generation_log(path: Path) -> dict[str, dict[str, Any]]:
    """Finished documents of a generation log, by doc id (a torn last line from a kill is ignored)."""
    records: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return records
    with path.open(encoding="utf-8") as handle:
        lines = handle.read().split("\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):  # the unterminated last line of a killed run: that batch is redone
                continue
            raise DataError(
                "malformed JSON in the generation log", path, number, hint="delete it to start over"
            ) from None
        if "doc_id" in record:
            records[record["doc_id"]] = record
    return records


def generate_queries(
    config: SynthConfig,
    documents: list[Document],
    templates: list[Template],
    generator: Generator,
    output: Path,
    *,
    progress: bool = True,
) -> GenerationReport:
    """Write replies for every document not yet in the generation log (see the module docstring, step 1)."""
    from tqdm.auto import tqdm

    path = log_path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    settings = _generation_settings(config, templates, generator)
    if config.overwrite and path.exists():
        path.unlink()
    if path.exists():
        header = _read_header(path)
        if header != settings:
            changed = sorted(k for k in settings if header.get(k) != settings.get(k))
            raise ConfigError(
                f"{path} was written with other settings (changed: {', '.join(changed) or 'format'}); "
                "rerun with the same ones to resume, or start over with --overwrite (or another --output)"
            )
    else:
        with path.open("w", encoding="utf-8") as handle:
            handle.write(json.dumps({"settings": settings}, ensure_ascii=False) + "\n")
    _truncate_torn_line(path)
    done = read_generation_log(path)
    pending = [d for d in documents if d.id not in done]
    report = GenerationReport(documents=len(documents), documents_done_before=len(documents) - len(pending))
    started = time.perf_counter()
    bar = tqdm(
        total=len(documents), initial=report.documents_done_before, desc="synth", unit="doc", disable=not progress
    )
    with path.open("a", encoding="utf-8") as handle:
        for start in range(0, len(pending), config.docs_per_batch):
            batch = pending[start : start + config.docs_per_batch]
            seed = _batch_seed(config.seed, batch[0].id)
            plan = [(d, t) for d in batch for t in _document_templates(d, templates, config.queries_per_doc)]
            prompts = [t.render(document=d.text[: config.max_doc_chars]) for d, t in plan]
            completions = generator.generate(prompts, seed=seed)
            report.replies += len(completions)
            replies: dict[str, list[dict[str, Any]]] = {d.id: [] for d in batch}
            failed: set[str] = set()
            for (document, template), completion in zip(plan, completions, strict=True):
                if completion.error is not None:
                    failed.add(document.id)
                    report.last_error = completion.error
                    continue
                query = clean_query(completion.text)
                if query is not None and query not in {r["query"] for r in replies[document.id]}:
                    replies[document.id].append(
                        {"query": query, "template": template.name, "template_file": template.source, "seed": seed}
                    )
                    report.queries += 1
            for document in batch:
                if document.id in failed:
                    report.documents_failed += 1
                    continue
                record = {"doc_id": document.id, "generator": generator.name, "queries": replies[document.id]}
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
            bar.update(len(batch))
            if getattr(generator, "budget_left", None) == 0:
                logger.warning("synth: the generator's request budget is spent; rerun to continue")
                break
    bar.close()
    report.seconds = round(time.perf_counter() - started, 2)
    report.generator_stats = dict(generator.stats)
    report.last_error = report.last_error or getattr(generator, "last_error", None)
    logger.info(
        "synth: %d replies -> %d queries in %.1f s (%.2f queries/s); %d documents done before, %d failed",
        report.replies,
        report.queries,
        report.seconds,
        report.queries / report.seconds if report.seconds else 0.0,
        report.documents_done_before,
        report.documents_failed,
    )
    return report


def _generation_settings(config: SynthConfig, templates: list[Template], generator: Generator) -> dict[str, Any]:
    """What shapes the replies: two runs may share a log only if these are equal."""
    g = config.generator
    return {
        "generator": generator.name,
        "templates": {t.name: hashlib.sha256(t.text.encode()).hexdigest()[:16] for t in templates},
        "queries_per_doc": config.queries_per_doc,
        "max_doc_chars": config.max_doc_chars,
        "seed": config.seed,
        "sampling": [g.max_new_tokens, g.temperature, g.top_p, g.system_prompt],
    }


def _settings(config: SynthConfig, templates: list[Template], generator: Generator) -> dict[str, Any]:
    settings = {k: v for k, v in asdict(config).items() if k != "generator"}
    settings["generator"] = {k: v for k, v in asdict(config.generator).items() if k != "api_key_env"}
    settings["generator_name"] = generator.name
    settings["template_files"] = {t.name: t.source for t in templates}
    return settings


def _read_header(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        first = handle.readline()
    try:
        return json.loads(first).get("settings", {})
    except (json.JSONDecodeError, AttributeError):
        raise DataError("the generation log has no settings line", path, 1, hint="delete it to start over") from None


def _truncate_torn_line(path: Path) -> None:
    """Cut an unterminated last line (a killed write) so that appends start on a fresh line."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with path.open("r+b") as handle:
            handle.truncate(data.rfind(b"\n") + 1)


def _document_templates(document: Document, templates: list[Template], count: int) -> list[Template]:
    """The query types of a document's ``count`` replies: the templates in turn, from a place its id picks.

    With fewer replies than templates every type still gets its share of the corpus; the choice depends only
    on the document, so a resumed run asks the same.
    """
    first = int.from_bytes(hashlib.blake2b(document.id.encode(), digest_size=4).digest(), "little")
    return [templates[(first + k) % len(templates)] for k in range(count)]


def _batch_seed(seed: int, first_id: str) -> int:
    """The sampling seed of a batch: the run's seed and the batch's first document (stable across resumes)."""
    digest = hashlib.blake2b(f"{seed}:{first_id}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little")


# ------------------------------------------------------------------------------------------- after generation
def _dedupe(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[tuple[str, str]] = set()
    unique = []
    for row in rows:
        key = (row["anchor"].lower(), row["doc_id"])
        if key not in seen:
            seen.add(key)
            unique.append(row)
    return unique


def _decontaminate(rows: list[dict[str, Any]], task_dirs: list[str]) -> tuple[list[dict[str, Any]], int]:
    from embedforge.data.decontaminate import EvalTextIndex, contaminated_rows

    index = EvalTextIndex.from_task_dirs(task_dirs)
    columns = {"anchor": [r["anchor"] for r in rows], "positive": [r["positive"] for r in rows]}
    keep, _ = contaminated_rows(columns, ["anchor", "positive"], index)
    removed = len(rows) - len(keep)
    if removed:
        logger.info("synth: decontamination dropped %d pairs sharing a text with evaluation data", removed)
    return [rows[i] for i in keep], removed


def _mine(
    rows: list[dict[str, Any]], pool: list[str], config: SynthConfig, model: SentenceTransformer | None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from datasets import Dataset

    from embedforge.mining import mine_hard_negatives

    if model is None:
        from embedforge.models import load_model

        model = load_model(config.filter_model)
    pairs = Dataset.from_dict({"anchor": [r["anchor"] for r in rows], "positive": [r["positive"] for r in rows]})
    result = mine_hard_negatives(
        model,
        pairs,
        corpus=pool,
        range_min=config.range_min,
        range_max=config.range_max,
        num_negatives=config.num_negatives,
        relative_margin=config.relative_margin,
        sampling="random",
        query_prompt=config.query_prompt,
        corpus_prompt="",
        batch_size=config.batch_size,
        seed=config.seed,
    )
    provenance = {(r["anchor"], r["positive"]): r for r in rows}
    mined: list[dict[str, Any]] = []
    for item in result.dataset:
        source = provenance[(item["anchor"], item["positive"])]
        mined.append({**item, **{k: v for k, v in source.items() if k not in item}})
    stats = {k: v for k, v in result.stats.to_dict().items() if k != "settings"}
    return mined, stats


def _write_rows(rows: list[dict[str, Any]], output: Path) -> None:
    from embedforge.utils.io import atomic_write_text

    order = ["anchor", "positive"] + sorted({k for r in rows for k in r if k.startswith("negative_")}, key=_neg_index)
    lines = []
    for row in rows:
        ordered = {k: row[k] for k in order if k in row}
        ordered.update({k: v for k, v in row.items() if k not in ordered})
        lines.append(json.dumps(ordered, ensure_ascii=False))
    atomic_write_text(output, "\n".join(lines) + "\n")


def _neg_index(name: str) -> int:
    return int(name.removeprefix("negative_"))
