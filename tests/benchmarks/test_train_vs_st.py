"""benchmarks/train_vs_sentence_transformers.py: speed sides parse, and a two-step run prints every side's ratio."""

from __future__ import annotations

import json

import pytest

from benchmarks import train_vs_sentence_transformers as bench


def test_speed_sides_parse_and_bad_ones_are_refused():
    assert bench.parse_speed("default") == {}
    assert bench.parse_speed("packing=true,fast_dropout=false") == {"packing": True, "fast_dropout": False}
    assert bench.parse_speed("packing=auto") == {"packing": "auto"}
    with pytest.raises(SystemExit, match="expected default or option=true"):
        bench.parse_speed("packing")


@pytest.mark.slow
def test_two_step_run_times_the_peer_and_every_embedforge_side(tiny_model_dir, tmp_path, capsys):
    code = bench.main(
        [
            "--base",
            str(tiny_model_dir),
            "--rows",
            "16",
            "--steps",
            "2",
            "--batch-size",
            "4",
            "--no-eval",
            "--output",
            str(tmp_path),
            "--speed",
            "default",
            "fast_dropout=false",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "speed ratio embedforge (default) / sentence-transformers" in out
    assert "speed ratio embedforge (fast_dropout=false) / sentence-transformers" in out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary["ratio"]) == {"default", "fast_dropout=false"} and all(r > 0 for r in summary["ratio"].values())
    assert (tmp_path / "embedforge-fast_dropout-false-0").is_dir() and (tmp_path / "embedforge-default-0").is_dir()
    table = (tmp_path / "table.md").read_text()  # generated, and re-rendered alike from the summary
    assert f"| embedforge, speed `default` | {summary['embedforge_seconds']['default']:.1f} |" in table
    assert f"| {summary['ratio']['fast_dropout=false']:.2f} |" in table and table in out
    assert bench.main(["--table", str(tmp_path / "summary.json"), "--batch-size", "4"]) == 0
    assert capsys.readouterr().out == table
