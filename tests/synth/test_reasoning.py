"""Reasoning-intensive data: mined candidates judged by an LLM into positives and hard negatives."""

from __future__ import annotations

import re

import pytest

from embedforge.errors import ConfigError
from embedforge.synth import JudgeConfig, judge_candidates, load_template
from embedforge.synth.reasoning import parse_listwise
from tests.synth.conftest import DOCUMENTS, BagOfWords, ScriptedGenerator

CORPUS = [d["text"] for d in DOCUMENTS]
QUERY = "why does magma from a volcano escape through the crust and not the ocean tides"


def test_pointwise_judge_splits_candidates():
    def judge(prompt):  # the volcano document is relevant, tides a hard negative, the rest in between
        return "3" if "magma, gas" in prompt else "0" if "Ocean tides" in prompt else "1"

    generator = ScriptedGenerator(judge)
    config = JudgeConfig(mode="pointwise", num_candidates=4, num_negatives=2)
    rows, counts = judge_candidates(
        generator,
        BagOfWords(),
        [QUERY, "unrelated words entirely"],
        CORPUS,
        config,
        load_template("judge_pointwise", "pointwise"),
    )
    assert len(generator.prompts) == 2 * 4  # every candidate of every query judged once
    assert len(rows) == 1 and counts["queries_without_positive"] == 1
    (row,) = rows
    assert row["positive"] == CORPUS[2] and row["negative_1"] == CORPUS[4] and "negative_2" not in row
    assert row["judge_mode"] == "pointwise" and row["judge_score"] == 3.0 and row["generator"] == "scripted"


def test_listwise_judge_splits_candidates():
    def judge(prompt):
        numbers = re.findall(r"\[(\d+)\] (\w+)", prompt)
        return ", ".join(n for n, word in numbers if word == "A")  # "A volcano erupts ..."

    template = load_template("judge_listwise", "listwise")
    rows, _ = judge_candidates(
        ScriptedGenerator(judge),
        BagOfWords(),
        [QUERY],
        CORPUS,
        JudgeConfig(mode="listwise", num_candidates=3),
        template,
    )
    (row,) = rows
    assert row["positive"] == CORPUS[2] and row["candidate_rank"] == 0
    assert {row["negative_1"], row["negative_2"]} <= set(CORPUS) - {CORPUS[2]}


@pytest.mark.parametrize(("reply", "parsed"), [("2, 5", [1, 4]), ("none", []), ("[1] and [9]", [0]), ("?", None)])
def test_parse_listwise(reply, parsed):
    assert parse_listwise(reply, 5) == parsed


def test_judge_options_are_checked():
    with pytest.raises(ConfigError, match="judge.mode: 'pairwise'"):
        JudgeConfig(mode="pairwise")
    with pytest.raises(ConfigError, match="negative_max"):
        JudgeConfig(positive_min=1, negative_max=1)
