"""End to end against a local OpenAI-compatible stub server: ``embedforge synth``, the ``synth`` stage, training."""

from __future__ import annotations

import json

import pytest
import yaml

from embedforge.cli import main
from embedforge.errors import ConfigError
from embedforge.recipes import recipe_from_dict
from tests.synth.conftest import DOCUMENTS, StubServer, first_words


def reply(prompt: str) -> str:
    if "needs an understanding" in prompt:  # the reasoning template
        return f"Why does it matter that {first_words(prompt, 4)}?"
    return f"Query: {first_words(prompt, 5)}?"


def test_cli_and_synth_stage_feed_training(corpus_file, tmp_path, tiny_bert_dir, tiny_model_dir, capsys):
    output = tmp_path / "out.jsonl"
    with StubServer(reply, fail=[503]) as server:
        code = main(
            [
                "synth",
                "--corpus", str(corpus_file), "--text-column", "text",
                "--generator", "openai:stub-llm", "--base-url", server.url, "--max-retries", "2",
                "--queries-per-doc", "2", "--max-docs", "4", "--templates", "question", "reasoning",
                "--filter-model", str(tiny_model_dir), "--filter-top-k", "none",
                "--output", str(output), "--quiet",
            ]
        )  # fmt: skip
        assert code == 0
        summary = json.loads(capsys.readouterr().out.split(": ", 1)[1])
        assert summary["documents"] == 4 and summary["failed"] == 0
        prompts = [r["messages"][-1]["content"] for r in server.requests]
        assert len(server.requests) == 4 * 2 + 1  # one 503 retried
        # each template once per document (the 503'd request, whichever it was, is repeated verbatim)
        assert len({p for p in prompts if "natural question" in p}) == 4  # the question template
        assert len({p for p in prompts if "needs an understanding" in p}) == 4  # the reasoning template
        assert {r["model"] for r in server.requests} == {"stub-llm"}

        rows = [json.loads(line) for line in output.read_text().splitlines()]
        assert len(rows) == 8
        texts = {d["text"] for d in DOCUMENTS}
        for row in rows:
            expected = {
                "question": first_words(row["positive"], 5) + "?",
                "reasoning": f"Why does it matter that {first_words(row['positive'], 4)}?",
            }
            assert row["positive"] in texts and row["anchor"] == expected[row["query_type"]]
            assert row["generator"] == f"openai:stub-llm@{server.url}"
            assert isinstance(row["filter_score"], float) and row["template"].endswith(f"{row['query_type']}.txt")

        # a recipe: a synth stage (same stub), then training on its output and on the CLI's file as kind: pairs
        train = {"batch_size": 4, "max_steps": 1, "save_steps": 1, "logging_steps": 1, "learning_rate": 1e-3}
        recipe = {
            "name": "synth-e2e",
            "model": {"base": str(tiny_bert_dir), "max_seq_length": 32},
            "output_dir": str(tmp_path / "run"),
            "seed": 3,
            "stages": {
                "synth": {
                    "type": "synth",
                    "corpus": str(corpus_file),
                    "generator": {"spec": "openai:stub-llm", "base_url": server.url},
                    "queries_per_doc": 1,
                    "templates": ["keywords"],
                    "filter_top_k": 6,
                    "model": "base",
                },
                "finetune": {
                    "datasets": [
                        {"name": "synth", "path": "@synth/synth.jsonl", "kind": "pairs"},
                        {"name": "cli", "path": str(output), "kind": "pairs"},
                    ],
                    **train,
                },
            },
        }
        path = tmp_path / "recipe.yaml"
        path.write_text(yaml.safe_dump(recipe, sort_keys=False))
        assert main(["train", str(path), "--quiet"]) == 0

    run = tmp_path / "run"
    stage = json.loads((run / "synth" / "stage.json").read_text())["summary"]
    assert stage["rows"] == len(DOCUMENTS) and stage["model"] == str(tiny_bert_dir)
    assert (run / "synth" / "synth.generations.jsonl").is_file()
    finetune = json.loads((run / "finetune" / "stage.json").read_text())["summary"]
    assert [d["path"] for d in finetune["datasets"]] == [str(run / "synth" / "synth.jsonl"), str(output)]
    assert (run / "finetune" / "final").is_dir()


def test_cli_reports_endpoint_failures(corpus_file, tmp_path, tiny_model_dir, capsys):
    output = tmp_path / "out.jsonl"
    with StubServer(reply, fail=[500] * 100) as server:
        code = main(
            [
                "synth", "--corpus", str(corpus_file), "--generator", "openai:stub", "--base-url", server.url,
                "--max-retries", "1", "--request-budget", "3", "--queries-per-doc", "1", "--max-docs", "2",
                "--docs-per-batch", "1", "--filter-model", "none", "--output", str(output), "--quiet",
            ]
        )  # fmt: skip
    captured = capsys.readouterr()
    assert code == 2  # no pair at all: an error naming the generation log
    assert "no synthetic pair left" in captured.err and "generations.jsonl" in captured.err
    assert len(server.requests) == 3  # the budget


def test_synth_stage_is_checked_at_load(tmp_path, corpus_file):
    recipe = {
        "name": "x",
        "model": {"base": "all-MiniLM-L6-v2"},
        "stages": {"synth": {"type": "synth", "corpus": str(corpus_file), "templates": ["questoin"]}},
    }
    with pytest.raises(ConfigError, match="unknown template 'questoin'. Did you mean 'question'"):
        recipe_from_dict(recipe, "recipe.yaml")
    recipe["stages"]["synth"] = {"type": "synth", "corpus": str(corpus_file), "queries_per_doc": 0}
    with pytest.raises(ConfigError, match="queries_per_doc"):
        recipe_from_dict(recipe, "recipe.yaml")


def test_cli_judges_mined_candidates_for_given_queries(corpus_file, tmp_path, tiny_model_dir, capsys):
    queries = tmp_path / "queries.jsonl"
    queries.write_text("".join(json.dumps({"question": q}) + "\n" for q in ("why do cats purr", "what is magma")))
    output = tmp_path / "reasoning.jsonl"
    with StubServer(lambda prompt: "2") as server:  # listwise: candidate [2] is the relevant one
        code = main(
            [
                "synth", "--queries", str(queries), "--query-column", "question", "--corpus", str(corpus_file),
                "--judge", "listwise", "--num-candidates", "4", "--num-negatives", "2",
                "--generator", "openai:judge", "--base-url", server.url, "--filter-model", str(tiny_model_dir),
                "--output", str(output), "--quiet",
            ]
        )  # fmt: skip
        prompts = [r["messages"][-1]["content"] for r in server.requests]
    assert code == 0 and json.loads(capsys.readouterr().out.split(": ", 1)[1])["rows"] == 2
    assert len(prompts) == 2 and all("[4]" in p and "[5]" not in p for p in prompts)  # 4 candidates listed
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    texts = {d["text"] for d in DOCUMENTS}
    for row, prompt in zip(rows, prompts, strict=True):
        assert row["candidate_rank"] == 1 and row["judge_mode"] == "listwise"
        assert f"[2] {row['positive']}" in prompt  # the judged candidate became the positive
        assert {row["negative_1"], row["negative_2"]} <= texts - {row["positive"]}


def test_cli_strip_lead_ins(corpus_file, tmp_path, tiny_model_dir, capsys):
    def chatty(prompt: str) -> str:
        return f"The document supports the finding that {first_words(prompt, 5)}"

    output = tmp_path / "out.jsonl"
    args = [
        "synth",
        "--corpus", str(corpus_file), "--generator", "openai:stub-llm", "--queries-per-doc", "1",
        "--max-docs", "3", "--templates", "question", "--filter-model", str(tiny_model_dir),
        "--filter-top-k", "none", "--output", str(output), "--quiet",
    ]  # fmt: skip
    with StubServer(chatty) as server:
        assert main([*args, "--base-url", server.url]) == 0
        assert all(r["anchor"].startswith("The document supports") for r in map(json.loads, output.open()))
        assert main([*args, "--base-url", server.url, "--strip-lead-ins"]) == 0
        assert len(server.requests) == 3  # the second run reused the generation log
    anchors = [json.loads(line)["anchor"] for line in output.open()]
    assert len(anchors) == 3 and not any("document" in a.lower() for a in anchors)
    capsys.readouterr()
