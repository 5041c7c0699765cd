"""Issue 12 (files): non-UTF-8 and truncated data, output permissions, a full disk, leftover staging folders."""

from __future__ import annotations

import errno
import gzip
import json
import os
import stat
from pathlib import Path

import pytest

from embedforge.data.readers import read_dataset
from embedforge.errors import DataError
from embedforge.utils import io
from embedforge.utils.io import atomic_write_json, iter_jsonl, staged_directory


def _rows(n: int = 30) -> bytes:
    return "".join(json.dumps({"anchor": f"a{i}", "positive": f"p{i}"}) + "\n" for i in range(n)).encode()


def test_non_utf8_training_data_names_file_and_line(tmp_path):
    path = tmp_path / "pairs.jsonl"
    lines = _rows(3).split(b"\n")
    lines[1] = b'{"anchor": "caf\xe9", "positive": "p"}'  # latin-1 e-acute
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(DataError, match=r"pairs\.jsonl:2: not UTF-8 text: byte 0xe9 .*iconv"):
        read_dataset(path)


def test_non_utf8_deep_in_a_file_names_its_own_line(tmp_path):
    # a text-mode file decodes 8 KB blocks ahead: the error must still name the line that holds the byte
    path = tmp_path / "big.jsonl"
    path.write_bytes(_rows(2000) + b'{"anchor": "\xff", "positive": "x"}\n')
    with pytest.raises(DataError, match=r"big\.jsonl:2001: not UTF-8"):
        list(iter_jsonl(path))


def test_truncated_jsonl_gz_is_one_error_naming_the_file(tmp_path):
    whole = gzip.compress(_rows(2000))
    path = tmp_path / "pairs.jsonl.gz"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataError, match=r"pairs\.jsonl\.gz: truncated or corrupt gzip data after line \d+"):
        read_dataset(path)


def test_crlf_lines_read_as_before(tmp_path):
    path = tmp_path / "crlf.jsonl"
    path.write_bytes(b'{"a": "x"}\r\n\r\n{"a": "y"}\r\n')
    assert [row for _, row in iter_jsonl(path)] == [{"a": "x"}, {"a": "y"}]
    with io.open_text(path) as handle:
        assert list(handle) == ['{"a": "x"}\n', "\n", '{"a": "y"}\n']


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_writes_and_staged_folders_follow_the_umask(tmp_path, umask_027):
    atomic_write_json(tmp_path / "results.json", {"a": 1})
    assert _mode(tmp_path / "results.json") == 0o640  # mkstemp alone gives 0600
    with staged_directory(tmp_path / "eval") as staging:
        atomic_write_json(staging / "leaderboard.json", [])
    assert _mode(tmp_path / "eval" / "leaderboard.json") == 0o640


def test_saved_model_folder_follows_the_umask(tmp_path, tiny_model):
    from embedforge.models import save_model

    old = os.umask(0o022)
    try:
        folder = save_model(tiny_model, tmp_path / "final")
    finally:
        os.umask(old)
    assert _mode(folder) == 0o755  # mkdtemp alone gives 0700: a teammate or a server could not read it
    assert _mode(folder / "modules.json") == 0o644


def test_full_disk_is_one_line_naming_the_path(tmp_path):
    from embedforge.utils.io import DiskFullError, reporting_full_disk

    with pytest.raises(DiskFullError, match=r"^no space left on device at .*x\.json; free some space"):
        with reporting_full_disk(tmp_path):
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x.json"))


def test_full_disk_seen_through_torch_save_error(tmp_path, monkeypatch):
    from embedforge.utils.io import DiskFullError, reporting_full_disk

    # torch.save loses the errno ("file write failed"); a nearly empty file system tells it apart
    monkeypatch.setattr(io.shutil, "disk_usage", lambda path: _Usage(free=4096))
    with pytest.raises(DiskFullError, match=rf"no space left on device at {tmp_path}"):
        with reporting_full_disk(tmp_path):
            raise RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file")
    monkeypatch.setattr(io.shutil, "disk_usage", lambda path: _Usage(free=10 * 2**30))
    with pytest.raises(RuntimeError, match="PytorchStreamWriter"):  # other failures pass through unchanged
        with reporting_full_disk(tmp_path):
            raise RuntimeError("PytorchStreamWriter failed writing file")


class _Usage:
    def __init__(self, free: int):
        self.total, self.used, self.free = 2 * free, free, free


def test_full_disk_during_training_keeps_the_partial_checkpoint_unused(tmp_path, tiny_bert_dir, monkeypatch, capsys):
    import torch

    from embedforge.cli import main
    from embedforge.training.checkpoints import last_complete_checkpoint
    from tests.training.conftest import tiny_recipe, write_recipe

    raw = tiny_recipe(tiny_bert_dir, tmp_path / "out")
    del raw["stages"]["finetune"]
    recipe = write_recipe(tmp_path / "r.yaml", raw)
    real_save = torch.save

    def save(obj, f, *args, **kwargs):
        if str(f).endswith("optimizer.pt"):
            raise OSError(errno.ENOSPC, "No space left on device", str(f))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    assert main(["train", str(recipe), "--quiet"]) == 2
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr
    err = [line for line in stderr.splitlines() if line.startswith("embedforge train")]
    assert len(err) == 1 and "no space left on device at " in err[0] and "optimizer.pt" in err[0], err
    stage = tmp_path / "out" / "pretrain"
    assert (stage / "checkpoint-2").is_dir()  # the partial checkpoint stays where it was
    assert last_complete_checkpoint(stage, remove_incomplete=False) is None  # and is never resumed from


def test_remove_stale_staging(tmp_path):
    from embedforge.utils.io import remove_stale_staging

    (tmp_path / ".final.saving-abc123").mkdir()
    (tmp_path / ".final.saving-abc123" / "model.safetensors").write_bytes(b"x")
    (tmp_path / "checkpoint-2").mkdir()
    (tmp_path / ".hidden-user-folder").mkdir()
    removed = remove_stale_staging(tmp_path)
    assert [p.name for p in removed] == [".final.saving-abc123"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden-user-folder", "checkpoint-2"]


def test_a_missing_key_is_not_called_an_empty_text(tmp_path):
    from embedforge.data import DatasetConfig, load_training_datasets

    path = tmp_path / "pairs.jsonl"
    path.write_text(
        '{"anchor": "a1", "positive": "p1"}\n{"anchor": "a2", "positve": "p2"}\n{"anchor": "a3", "positive": "p3"}\n'
    )
    with pytest.raises(DataError, match=r"pairs\.jsonl:2: no column 'positive' \(or it is null\)"):
        load_training_datasets([DatasetConfig(name="d", path=str(path), kind="pairs")], seed=0)
