"""benchmarks/serve_load.py: the side-by-side table of earlier runs, and the outlier rule it measured."""

from __future__ import annotations

import json
import sys

from benchmarks import serve_load


def _figures(ratio: float, hostile: dict | None) -> dict:
    figures = {
        "ratio": ratio,
        "server_texts_per_s": 440.0 * ratio,
        "offline_texts_per_s": 440.0,
        "ratio_per_round": [ratio - 0.01, ratio + 0.01],
        "offline_cores_busy": 1.99,
        "server_cores_busy": 1.88,
        "cpu_ms_per_text": {"offline": 4.09, "server": 4.29},
        "p50_ms": 500.0,
        "p99_ms": 1000.0,
    }
    if hostile is not None:
        figures["hostile"] = hostile
    return figures


def test_table_has_one_column_per_run_and_the_hostile_p99_ratio(tmp_path, capsys, monkeypatch):
    hostile = {
        "clients": 2,
        "text_mb": 10,
        "rate_per_client": 1.0,
        "server_max_body_mb": 2.0,
        "huge_requests": 60,
        "huge_statuses": [413],
        "rss_peak_over_idle_mb": 4.0,
        "normal_p50_ms": 527.0,
        "normal_p99_ms": 1320.0,
        "normal_texts_per_s": 432.0,
    }
    first, second = tmp_path / "plain.json", tmp_path / "hostile.json"
    first.write_text(json.dumps(_figures(0.88, None)))
    second.write_text(json.dumps(_figures(0.90, hostile)))
    table = serve_load.markdown_table([first, second])
    lines = table.splitlines()
    assert lines[0] == "| figure | run 1 | run 2 |" and all(line.count("|") == 4 for line in lines)
    assert "| server / offline texts/s | 0.880 (387 / 440) | 0.900 (396 / 440) |" in lines
    assert "| cores busy: offline / server | 1.99 / 1.88 | 1.99 / 1.88 |" in lines
    assert "527 / 1320 (1.32x)" in table and "2 x 10 MB, 1/s each, body limit 2 MB" in table
    assert any(line.startswith("| normal p50 / p99 ms in the hostile round | - |") for line in lines)
    # runs before packed serving recorded neither the encode path nor the offline packed rate
    assert "| server encodes | - | - |" in lines and "| offline packed texts/s (server / it) | - | - |" in lines
    packed = tmp_path / "packed.json"
    packed.write_text(json.dumps({**_figures(1.10, None), "packed": True, "offline_packed_texts_per_s": 605.0}))
    packed_lines = serve_load.markdown_table([packed]).splitlines()
    assert "| server encodes | packed |" in packed_lines
    assert "| offline packed texts/s (server / it) | 605 (0.800) |" in packed_lines
    monkeypatch.setattr(sys, "argv", ["serve_load.py", "--table", str(first), str(second)])
    serve_load.main()
    assert capsys.readouterr().out == table
