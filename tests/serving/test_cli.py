"""``embedforge serve``: parser, option mapping, and errors (nothing here starts a blocking server)."""

from __future__ import annotations

import argparse

import pytest

from embedforge.cli import COMMANDS, main


def _parse(argv):
    from embedforge.cli import serve

    parser = argparse.ArgumentParser()
    serve.add_arguments(parser)
    return parser.parse_args(argv)


def test_serve_is_registered_and_help_works(capsys):
    assert COMMANDS["serve"][0] == "embedforge.cli.serve"
    with pytest.raises(SystemExit) as info:
        main(["serve", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for option in ("--host", "--port", "--max-batch-tokens", "--max-wait-ms", "--max-inputs", "--no-truncate"):
        assert option in out


def test_defaults_map_to_create_app_defaults():
    import inspect

    from embedforge.cli.serve import app_options
    from embedforge.serving import create_app

    args = _parse(["all-MiniLM-L6-v2"])
    assert (args.model, args.host, args.port) == ("all-MiniLM-L6-v2", "127.0.0.1", 8000)
    options = app_options(args)
    defaults = {
        name: p.default
        for name, p in inspect.signature(create_app).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    assert set(options) <= set(defaults)
    for name, value in options.items():
        assert value == defaults[name], name


def test_options_are_passed_through(tmp_path):
    from embedforge.cli.serve import app_options

    calibration = tmp_path / "calib.txt"
    calibration.write_text("first text\n\nsecond text\n", encoding="utf-8")
    args = _parse(
        [
            "some/model",
            "--model-name",
            "m",
            "--max-batch-tokens",
            "1024",
            "--max-wait-ms",
            "2.5",
            "--max-inputs",
            "16",
            "--no-truncate",
            "--max-body-mb",
            "1",
            "--int8-calibration",
            str(calibration),
            "--encode-batch-size",
            "8",
            "--max-seq-length",
            "128",
        ]
    )
    options = app_options(args)
    assert options["model_name"] == "m"
    assert options["max_batch_tokens"] == 1024 and options["max_wait_ms"] == 2.5
    assert options["max_inputs"] == 16 and options["truncate"] is False
    assert options["max_body_bytes"] == 1024 * 1024
    assert options["int8_calibration"] == ["first text", "second text"]
    assert options["encode_batch_size"] == 8 and options["max_seq_length"] == 128


def test_unknown_model_is_a_one_line_error(tmp_path, capsys):
    assert main(["serve", str(tmp_path / "no-such-model"), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "embedforge serve: error:" in err and "no-such-model" in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--port", "70000"], "--port"),
        (["--max-batch-tokens", "0"], "max_batch_tokens"),
        (["--max-wait-ms", "-1"], "max_wait_ms"),
        (["--int8-calibration", "/nonexistent/calib.txt"], "--int8-calibration"),
    ],
)
def test_bad_options_are_one_line_errors(tiny_model_dir, capsys, argv, message):
    assert main(["serve", str(tiny_model_dir), *argv]) == 2
    assert message in capsys.readouterr().err
