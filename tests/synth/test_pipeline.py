"""The pipeline: corpus readers, query cleaning, round-trip filter, resume, decontamination, provenance."""

from __future__ import annotations

import gzip
import json

import pytest

from embedforge.errors import ConfigError, DataError
from embedforge.synth import SynthConfig, clean_query, log_path, read_documents, round_trip_ranks, synthesize
from tests.synth.conftest import DOCUMENTS, BagOfWords, ScriptedGenerator, first_words


def rows_of(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def config(corpus, output, **options) -> SynthConfig:
    defaults = {"templates": ["question", "keywords"], "queries_per_doc": 2, "docs_per_batch": 2, "filter_top_k": 1}
    return SynthConfig(corpus=str(corpus), output=str(output), **{**defaults, **options})


@pytest.mark.parametrize("layout", ["jsonl", "jsonl.gz", "parquet", "beir", "pairs-column"])
def test_corpus_readers(tmp_path, layout):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"_id": "a", "title": "T", "text": "first doc"}, {"_id": "b", "title": "", "text": "second doc"}]
    column = "text"
    if layout == "jsonl":
        path = tmp_path / "c.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif layout == "jsonl.gz":
        path = tmp_path / "c.jsonl.gz"
        with gzip.open(path, "wt") as handle:
            handle.write("".join(json.dumps(r) + "\n" for r in rows))
    elif layout == "parquet":
        path = tmp_path / "c.parquet"
        pq.write_table(pa.Table.from_pylist(rows), path)
    elif layout == "beir":
        path = tmp_path / "beir"
        path.mkdir()
        (path / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (path / "queries.jsonl").write_text(json.dumps({"_id": "q", "text": "x"}) + "\n")
    else:  # one column of a pairs file, no ids: the text's hash is the id
        path = tmp_path / "pairs.jsonl"
        path.write_text("".join(json.dumps({"summary": "s", "description": r["text"]}) + "\n" for r in rows))
        column = "description"
    documents = read_documents(path, text_column=column)
    texts = [d.text for d in documents]
    if layout == "beir":
        assert texts == ["T first doc", "second doc"]  # BEIR: the title goes in front, as mteb does
    else:
        assert texts == ["first doc", "second doc"]
    ids = [d.id for d in documents]
    assert ids == ["a", "b"] if layout != "pairs-column" else len(set(ids)) == 2 and all(len(i) == 16 for i in ids)


def test_corpus_reader_names_a_wrong_column(corpus_file):
    with pytest.raises(DataError, match=r"docs.jsonl: no column 'body'; columns present: _id, text"):
        read_documents(corpus_file, text_column="body")


@pytest.mark.parametrize(
    ("reply", "query"),
    [
        ("Query: how do cats purr?\nExplanation: ...", "how do cats purr?"),
        ('1. "volcano eruption causes"', "volcano eruption causes"),
        ("\n\n  **python dynamic typing**  ", "python dynamic typing"),
        ("ok", None),
        ("", None),
        ("The document supports the finding that cats purr.", "The document supports the finding that cats purr."),
    ],
)
def test_clean_query(reply, query):
    assert clean_query(reply) == query


@pytest.mark.parametrize(
    ("reply", "query"),
    [
        # lead-ins about the source that SmolLM2 wrote for SciFact claims (runs/synth-scifact-claim)
        ("The document supports the finding that PTH signaling is essential.", "PTH signaling is essential."),
        (
            "The document supports a finding by suggesting that mitochondria become targets of stress.",
            "Mitochondria become targets of stress.",
        ),
        ("This document supports a finding of a link between PD-1 and SLE", "A link between PD-1 and SLE"),
        ("According to the document, aspirin lowers the risk.", "Aspirin lowers the risk."),
        ("Document: Document: N- and E-cadherins are required.", "N- and E-cadherins are required."),
        ("Claim: the study shows that vitamin D reduces falls", "Vitamin D reduces falls"),
        ("Based on the document's findings, iPhone sales rose.", "iPhone sales rose."),
        ("1. Query: The document shows that tides follow the moon", "Tides follow the moon"),
        # a sentence that is about the document, with no lead-in to cut, stays whole
        ("The document discusses cancer survival rates.", "The document discusses cancer survival rates."),
        ("The claim that cats purr", "The claim that cats purr"),
        ("the paper that introduced transformers", "the paper that introduced transformers"),
    ],
)
def test_clean_query_cuts_lead_ins_when_asked(reply, query):
    assert clean_query(reply, lead_ins=True) == query
    assert clean_query(query, lead_ins=True) == query  # idempotent: a cleaned query cleans to itself


def test_lead_ins_are_cut_from_an_existing_log_when_the_option_is_turned_on(corpus_file, tmp_path):
    output = tmp_path / "out.jsonl"
    options = {"filter_top_k": None, "queries_per_doc": 1, "templates": ["question"]}
    synthesize(config(corpus_file, output, **options), generator=ScriptedGenerator(first_words), model=BagOfWords())
    log = log_path(output)
    lines = log.read_text().splitlines()
    chatty = json.loads(lines[1])
    plain = chatty["queries"][0]["query"]
    chatty["queries"][0]["query"] = "The document supports the finding that " + plain
    log.write_text("\n".join([lines[0], json.dumps(chatty), *lines[2:]]) + "\n")
    synthesize(config(corpus_file, output, **options), generator=ScriptedGenerator(first_words), model=BagOfWords())
    assert {r["doc_id"]: r["anchor"] for r in rows_of(output)}[chatty["doc_id"]].startswith("The document supports")
    again = ScriptedGenerator(first_words)
    options["strip_lead_ins"] = True
    synthesize(config(corpus_file, output, **options), generator=again, model=BagOfWords())
    assert again.prompts == []  # the option does not shape the replies: the log was reused
    anchors = {r["doc_id"]: r["anchor"] for r in rows_of(output)}
    assert not any("document" in a.lower() for a in anchors.values())
    assert anchors[chatty["doc_id"]].lower() == plain.lower()


def test_round_trip_ranks_count_documents_scoring_higher():
    pool = [d["text"] for d in DOCUMENTS]
    ranks, scores = round_trip_ranks(BagOfWords(), ["volcano magma erupts", "volcano magma erupts"], [2, 0], pool)
    assert ranks[0] == 0 and ranks[1] > 0  # its own document first; the cats document is outranked
    assert scores[0] > scores[1]


def test_filter_drops_a_planted_irrelevant_pair(corpus_file, tmp_path):
    def reply(prompt):
        if "magma" in prompt and "keyword" in prompt:
            return "how long should sourdough starter ferment"  # planted: a bread query for the volcano document
        return first_words(prompt)

    generator = ScriptedGenerator(reply)
    output = tmp_path / "out.jsonl"
    result = synthesize(config(corpus_file, output), generator=generator, model=BagOfWords(), progress=False)
    rows = rows_of(output)
    assert result.stats["filter"] == {"top_k": 1, "kept": len(rows), "dropped": 1}
    assert "how long should sourdough starter ferment" not in {r["anchor"] for r in rows}
    assert {r["doc_id"] for r in rows} == {d["_id"] for d in DOCUMENTS}  # every other document keeps its query
    # provenance on every row
    row = rows[0]
    assert {"anchor", "positive", "doc_id", "query_type", "template", "generator", "seed", "filter_rank"} <= set(row)
    assert row["generator"] == "scripted" and row["filter_rank"] == 0 and row["template"].endswith(".txt")
    # filter off: the planted pair stays, scored
    off = tmp_path / "off.jsonl"
    synthesize(config(corpus_file, off, filter_top_k=None), generator=generator, model=BagOfWords(), progress=False)
    planted = [r for r in rows_of(off) if r["anchor"].startswith("how long should sourdough")]
    assert len(planted) == 1 and planted[0]["doc_id"] == "volcano" and planted[0]["filter_rank"] > 0


def test_llm_judge_threshold(corpus_file, tmp_path):
    def reply(prompt):
        if prompt.startswith("Query:"):  # the pointwise judge: the chess document is judged irrelevant
            return "0" if "Chess" in prompt else "3"
        return first_words(prompt)

    output = tmp_path / "out.jsonl"
    options = {"filter_top_k": None, "judge_threshold": 2.0, "queries_per_doc": 1}
    result = synthesize(config(corpus_file, output, **options), generator=ScriptedGenerator(reply), model=BagOfWords())
    rows = rows_of(output)
    assert result.stats["judge"]["dropped"] == 1 and "chess" not in {r["doc_id"] for r in rows}
    assert all(r["judge_score"] == 3.0 for r in rows)


def test_resume_skips_finished_documents(corpus_file, tmp_path):
    output = tmp_path / "out.jsonl"
    killed = ScriptedGenerator(first_words, fail_after=4)  # dies during the second batch of 2 documents
    with pytest.raises(KeyboardInterrupt):
        synthesize(config(corpus_file, output), generator=killed, model=BagOfWords(), progress=False)
    assert not output.exists()  # nothing final before the end
    log = log_path(output)
    assert len(log.read_text().splitlines()) == 1 + 2  # settings + the first batch's 2 documents
    with log.open("a") as handle:  # and a torn line, as a kill mid-write leaves
        handle.write('{"doc_id": "tides", "queries": [')

    again = ScriptedGenerator(first_words)
    result = synthesize(config(corpus_file, output), generator=again, model=BagOfWords(), progress=False)
    assert result.stats["generation"]["documents_done_before"] == 2
    assert len(again.prompts) == 2 * (len(DOCUMENTS) - 2)  # only the unfinished documents were generated
    assert not any("Cats are small" in p or "Python is" in p for p in again.prompts)
    assert {r["doc_id"] for r in rows_of(output)} == {d["_id"] for d in DOCUMENTS}

    third = ScriptedGenerator(first_words)  # everything done: nothing generated, same output
    synthesize(config(corpus_file, output), generator=third, model=BagOfWords(), progress=False)
    assert third.prompts == []


def test_resume_refuses_other_settings(corpus_file, tmp_path):
    output = tmp_path / "out.jsonl"
    synthesize(config(corpus_file, output), generator=ScriptedGenerator(first_words), model=BagOfWords())
    with pytest.raises(ConfigError, match=r"other settings \(changed: queries_per_doc\).*--overwrite"):
        synthesize(config(corpus_file, output, queries_per_doc=3), generator=ScriptedGenerator(first_words))
    again = ScriptedGenerator(first_words)
    synthesize(config(corpus_file, output, queries_per_doc=3, overwrite=True), generator=again, model=BagOfWords())
    assert len(again.prompts) == 3 * len(DOCUMENTS)


def test_failed_documents_are_left_for_a_rerun(corpus_file, tmp_path):
    from embedforge.synth import Completion

    class Flaky(ScriptedGenerator):
        def generate(self, prompts, *, seed, temperature=None):
            replies = super().generate(prompts, seed=seed)
            return [
                Completion(None, "HTTP 503: down") if "Python is" in p else r
                for p, r in zip(prompts, replies, strict=True)
            ]

    output = tmp_path / "out.jsonl"
    result = synthesize(
        config(corpus_file, output, filter_top_k=None), generator=Flaky(first_words), model=BagOfWords()
    )
    assert result.stats["generation"]["documents_failed"] == 1
    assert result.stats["generation"]["last_error"] == "HTTP 503: down"
    assert "python" not in {r["doc_id"] for r in rows_of(output)}
    again = ScriptedGenerator(first_words)
    synthesize(config(corpus_file, output, filter_top_k=None), generator=again, model=BagOfWords())
    assert len(again.prompts) == 2 and all("Python is" in p for p in again.prompts)


def test_decontamination_drops_eval_texts(corpus_file, tmp_path):
    task = tmp_path / "tasks" / "Leak"
    (task / "qrels").mkdir(parents=True)
    (task / "task.json").write_text(json.dumps({"name": "Leak", "type": "Retrieval", "eval_split": "test"}))
    (task / "corpus.jsonl").write_text(json.dumps({"_id": "d", "text": "x"}) + "\n")
    leaked = first_words(DOCUMENTS[0]["text"])
    (task / "queries.jsonl").write_text(json.dumps({"_id": "q", "text": leaked}) + "\n")
    (task / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq\td\t1\n")
    output = tmp_path / "out.jsonl"
    options = {"filter_top_k": None, "queries_per_doc": 1, "decontaminate_against": [str(tmp_path / "tasks")]}
    result = synthesize(
        config(corpus_file, output, **options), generator=ScriptedGenerator(first_words), model=BagOfWords()
    )
    assert result.stats["decontaminated"] == 1
    assert leaked not in {r["anchor"] for r in rows_of(output)}


def test_mined_negatives_keep_provenance(corpus_file, tmp_path, tiny_model):
    output = tmp_path / "out.jsonl"
    options = {"filter_top_k": None, "num_negatives": 2, "range_min": 0, "range_max": 5, "relative_margin": None}
    synthesize(config(corpus_file, output, **options), generator=ScriptedGenerator(first_words), model=tiny_model)
    rows = rows_of(output)
    assert rows and all({"negative_1", "negative_2", "doc_id", "generator", "filter_rank"} <= set(r) for r in rows)
    assert all(r["positive"] not in (r["negative_1"], r["negative_2"]) for r in rows)
    assert list(rows[0])[:4] == ["anchor", "positive", "negative_1", "negative_2"]


def test_options_are_checked():
    with pytest.raises(ConfigError, match="queries_per_doc: must be a positive integer, got 0"):
        SynthConfig(corpus="c", output="o", queries_per_doc=0)
    with pytest.raises(ConfigError, match="filter_top_k needs filter_model"):
        SynthConfig(corpus="c", output="o", filter_model=None)


def test_one_query_per_document_still_covers_the_query_types(corpus_file, tmp_path):
    generator = ScriptedGenerator(first_words)
    options = {"templates": ["question", "keywords", "reasoning"], "queries_per_doc": 1, "filter_top_k": None}
    synthesize(config(corpus_file, tmp_path / "o.jsonl", **options), generator=generator, model=BagOfWords())
    types = {r["query_type"] for r in rows_of(tmp_path / "o.jsonl")}
    assert len(generator.prompts) == len(DOCUMENTS) and len(types) >= 2
