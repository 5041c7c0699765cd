"""Bidirectional vs causal attention for every registered decoder family, as plain transformers loads it.

Each family is loaded by embedforge, saved with ``save_model`` and re-loaded by plain
``AutoModel.from_pretrained`` (what ``SentenceTransformer(path)`` does): the saved ``config.json``
alone must make the model bidirectional, padding still masked.
"""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer

from embedforge.errors import ConfigError
from embedforge.models import load_model, save_model
from embedforge.models.decoder import (
    DECODER_FAMILIES,
    is_bidirectional,
    load_decoder,
    probe_bidirectional,
    set_bidirectional,
)
from embedforge.models.tiny import TINY_CONFIGS, TINY_DECODERS

IDS = torch.tensor([[1012, 1450, 1777, 1200, 1999, 1300, 1640, 1888]])  # 8 tokens
CHANGED = IDS.clone()
CHANGED[0, -1] = 1500  # only the last token differs


def _hidden(model, ids, mask=None):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask).last_hidden_state


@pytest.fixture(scope="module")
def saved_decoders(tiny_decoder_dir, tmp_path_factory):
    """(arch, bidirectional) -> a SentenceTransformer folder saved by embedforge."""
    saved = {}

    def get(arch: str, bidirectional: bool):
        key = (arch, bidirectional)
        if key not in saved:
            model = load_decoder(tiny_decoder_dir(arch), bidirectional=bidirectional, max_seq_length=32)
            saved[key] = save_model(model, tmp_path_factory.mktemp(f"{arch}-{bidirectional}") / "model")
        return saved[key]

    return get


def test_every_registered_family_has_a_tiny_model():
    # the attention tests below run on TINY_DECODERS; a family registered without one is unverified
    assert set(DECODER_FAMILIES) <= set(TINY_CONFIGS)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("arch", TINY_DECODERS)
def test_saved_config_alone_makes_plain_transformers_bidirectional(arch, attn, saved_decoders):
    bidirectional = AutoModel.from_pretrained(saved_decoders(arch, True), attn_implementation=attn).eval()
    causal = AutoModel.from_pretrained(saved_decoders(arch, False), attn_implementation=attn).eval()

    # token 0 sees the last token only without the causal mask
    assert (_hidden(bidirectional, IDS)[0, 0] - _hidden(bidirectional, CHANGED)[0, 0]).abs().max() > 1e-4
    torch.testing.assert_close(_hidden(causal, IDS)[0, 0], _hidden(causal, CHANGED)[0, 0], atol=1e-6, rtol=0)
    # while every token's state up to the change is identical for the causal model, as a sanity check
    torch.testing.assert_close(_hidden(causal, IDS)[0, :-1], _hidden(causal, CHANGED)[0, :-1], atol=1e-6, rtol=0)


@pytest.mark.parametrize("arch", TINY_DECODERS)
def test_saved_config_records_the_attention_mode(arch, saved_decoders):
    assert json.loads((saved_decoders(arch, True) / "config.json").read_text())["is_causal"] is False
    assert json.loads((saved_decoders(arch, False) / "config.json").read_text())["is_causal"] is True


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("arch", TINY_DECODERS)
def test_padding_is_masked_in_bidirectional_attention(arch, side, saved_decoders):
    model = AutoModel.from_pretrained(saved_decoders(arch, True)).eval()
    short = IDS[:, :5]
    alone = _hidden(model, short)[0]
    pad = torch.zeros(3, dtype=torch.long)
    if side == "right":
        row, mask_row, real = torch.cat([short[0], pad]), [1] * 5 + [0] * 3, slice(0, 5)
    else:
        row, mask_row, real = torch.cat([pad, short[0]]), [0] * 3 + [1] * 5, slice(3, 8)
    batch = torch.stack([IDS[0], row])
    mask = torch.tensor([[1] * 8, mask_row])
    padded = _hidden(model, batch, mask)
    # left padding shifts the rotary positions; RoPE depends on relative positions only, so the
    # real tokens agree up to float rounding
    torch.testing.assert_close(padded[1, real], alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(padded[0], _hidden(model, IDS)[0], atol=1e-5, rtol=1e-5)


def test_token_zero_embedding_sees_a_later_token_through_encode(tiny_decoder_dir):
    """Must-show 1 at the SentenceTransformer level: token 0's output embedding."""
    texts = ["the cat sat on the mat", "the cat sat on the rug"]
    bidirectional = load_decoder(tiny_decoder_dir("llama"))
    causal = load_decoder(tiny_decoder_dir("llama"), bidirectional=False)
    tokens_bi = bidirectional.encode(texts, output_value="token_embeddings")
    tokens_causal = causal.encode(texts, output_value="token_embeddings")
    assert (tokens_bi[0][0] - tokens_bi[1][0]).abs().max() > 1e-4
    torch.testing.assert_close(tokens_causal[0][0], tokens_causal[1][0], atol=1e-6, rtol=0)


def test_load_model_routes_decoder_folders_to_bidirectional_mean_pooling(tiny_decoder_dir, tiny_bert_dir):
    model = load_model(tiny_decoder_dir("qwen2"))
    assert is_bidirectional(model)
    assert model[1].pooling_mode == "mean"
    assert not is_bidirectional(load_model(tiny_decoder_dir("qwen2"), bidirectional=False))
    with pytest.raises(ConfigError, match="always bidirectional"):
        load_model(tiny_bert_dir, bidirectional=False)


def test_set_bidirectional_switches_a_loaded_model(tiny_decoder_dir, tmp_path):
    model = load_decoder(tiny_decoder_dir("mistral"), bidirectional=False)
    before = model.encode(["a b c d e"], convert_to_tensor=True)
    set_bidirectional(model, True)
    assert is_bidirectional(model)
    assert not torch.allclose(model.encode(["a b c d e"], convert_to_tensor=True), before, atol=1e-4)
    # and a SentenceTransformer folder can be re-loaded with the other mode
    saved = save_model(model, tmp_path / "m")
    assert not is_bidirectional(load_model(saved, bidirectional=False))
    assert is_bidirectional(load_model(saved))


def test_probe_tells_bidirectional_from_causal(tiny_decoder_dir):
    model = load_decoder(tiny_decoder_dir("olmoe"))
    hf_model = model[0].model
    assert probe_bidirectional(hf_model)
    hf_model.config.is_causal = True
    assert not probe_bidirectional(hf_model)


def test_unregistered_family_that_honours_is_causal_loads_after_a_probe(tmp_path, caplog):
    # olmo2 is not in DECODER_FAMILIES: the load probes its attention and accepts it
    folder = _tiny_folder(tmp_path, "olmo2", hidden_size=32, intermediate_size=64)
    model = load_decoder(folder)
    assert "not in embedforge's verified table" in caplog.text
    assert probe_bidirectional(model[0].model)


def test_family_without_bidirectional_mode_is_refused(tmp_path):
    # Mamba is a decoder (causal-LM head, no masked-LM head) whose recurrence cannot be un-masked
    folder = _tiny_folder(tmp_path, "mamba", hidden_size=32, state_size=4)
    with pytest.raises(ConfigError, match="does not honour `is_causal: false`"):
        load_decoder(folder)
    assert not is_bidirectional(load_decoder(folder, bidirectional=False))


def test_bad_arguments_are_clear_errors(tiny_decoder_dir, tiny_bert_dir):
    with pytest.raises(ConfigError, match="unknown pooling"):
        load_decoder(tiny_decoder_dir("llama"), pooling="last")
    with pytest.raises(ConfigError, match="padding_side"):
        load_decoder(tiny_decoder_dir("llama"), padding_side="middle")
    with pytest.raises(ConfigError, match="dtype"):
        load_decoder(tiny_decoder_dir("llama"), dtype="int8")
    with pytest.raises(ConfigError, match="not a decoder LLM"):
        load_decoder(tiny_bert_dir)


def _tiny_folder(tmp_path, model_type: str, **shape):
    """A tiny causal-LM folder of a family outside TINY_CONFIGS, with the tiny models' tokenizer."""
    tokenizer = AutoTokenizer.from_pretrained(str(_minilm_dir()))
    config = AutoConfig.for_model(
        model_type,
        vocab_size=len(tokenizer),
        num_hidden_layers=2,
        num_attention_heads=4,
        pad_token_id=0,
        bos_token_id=101,
        eos_token_id=102,
        **shape,
    )
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path / model_type)
    tokenizer.save_pretrained(tmp_path / model_type)
    return tmp_path / model_type


def _minilm_dir():
    from embedforge.models import resolve_model_path

    return resolve_model_path("all-MiniLM-L6-v2")
