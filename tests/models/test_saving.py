from __future__ import annotations

import json

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

from embedforge.errors import ConfigError
from embedforge.models import load_model, resolve_model_path, save_model

TEXTS = ["A man is playing a guitar.", "The cat sleeps on the mat.", "Embeddings map text to vectors."]


def test_saved_folder_uses_the_widely_read_format(tiny_model, tmp_path):
    out = save_model(tiny_model, tmp_path / "m", prompts={"query": "Instruct: find\nQuery: ", "document": ""})
    modules = json.loads((out / "modules.json").read_text())
    assert [m["type"] for m in modules] == [
        "sentence_transformers.models.Transformer",
        "sentence_transformers.models.Pooling",
        "sentence_transformers.models.Normalize",
    ]
    pooling = json.loads((out / "1_Pooling" / "config.json").read_text())
    assert pooling["word_embedding_dimension"] == 32
    assert pooling["pooling_mode_mean_tokens"] is True
    assert pooling["pooling_mode_cls_token"] is False and pooling["pooling_mode_lasttoken"] is False
    assert json.loads((out / "sentence_bert_config.json").read_text()) == {
        "max_seq_length": 64,
        "do_lower_case": False,
    }
    config = json.loads((out / "config_sentence_transformers.json").read_text())
    assert config["prompts"]["query"] == "Instruct: find\nQuery: "


def test_plain_sentence_transformer_reloads_identical_embeddings(tiny_model, tmp_path):
    out = save_model(tiny_model, tmp_path / "m", prompts={"query": "query: "})
    reloaded = SentenceTransformer(str(out))
    assert reloaded.max_seq_length == 64
    np.testing.assert_allclose(reloaded.encode(TEXTS), tiny_model.encode(TEXTS), atol=1e-6)
    np.testing.assert_allclose(reloaded.encode_query(TEXTS), tiny_model.encode(TEXTS, prompt="query: "), atol=1e-6)


def test_save_replaces_an_existing_folder_atomically(tiny_model, tmp_path):
    out = tmp_path / "m"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    save_model(tiny_model, out)
    assert not (out / "stale.txt").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "staging folders left behind"


def test_unknown_model_name_is_a_clear_error():
    with pytest.raises(ConfigError, match="all-MiniLM-L6-v2"):
        resolve_model_path("all-MiniLM-L6-v3")


def test_folder_without_model_files_is_rejected(tmp_path):
    with pytest.raises(ConfigError, match="not a model folder"):
        load_model(tmp_path)


def test_plain_hf_folder_gets_mean_pooling(tiny_bert_dir):
    model = load_model(tiny_bert_dir, pooling="cls")
    assert model[1].pooling_mode == "cls"
    with pytest.raises(ConfigError, match="unknown pooling"):
        load_model(tiny_bert_dir, pooling="avg")
