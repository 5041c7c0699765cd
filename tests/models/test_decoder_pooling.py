"""Pooling of decoder embeddings (mean, last token, first token, prompt excluded) under left and right
padding, and the save -> plain ``SentenceTransformer(path)`` round trip (must-show 3, first half)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer

from embedforge.models import save_model
from embedforge.models.decoder import load_decoder

# different lengths, so a batch is padded
TEXTS = [
    "A man is playing a guitar on the street.",
    "Cats sleep.",
    "Embeddings map text to vectors so that similar meanings land close together.",
]
PROMPT = "Instruct: retrieve passages\nQuery: "


def _one_by_one(model, texts, **kwargs):
    return np.stack([model.encode([text], **kwargs)[0] for text in texts])


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("pooling", ["mean", "lasttoken", "cls"])
def test_padded_batch_pools_like_single_texts(tiny_decoder_dir, pooling, side):
    model = load_decoder(tiny_decoder_dir("qwen2"), pooling=pooling, padding_side=side)
    assert model[0].tokenizer.padding_side == side
    batch = model.encode(TEXTS, batch_size=len(TEXTS))
    np.testing.assert_allclose(batch, _one_by_one(model, TEXTS), atol=1e-5)


@pytest.mark.parametrize("pooling", ["lasttoken", "cls"])
def test_last_and_first_token_pooling_pick_the_real_end_tokens(tiny_decoder_dir, pooling):
    model = load_decoder(tiny_decoder_dir("llama"), pooling=pooling, normalize=False, padding_side="left")
    # each text alone (no padding): sentence-transformers' token_embeddings output trims only
    # *trailing* pads, so a left-padded batch would keep the leading ones
    tokens = [model.encode([text], output_value="token_embeddings")[0] for text in TEXTS]
    pooled = model.encode(TEXTS, batch_size=len(TEXTS), convert_to_tensor=True)
    expected = torch.stack([t[-1] if pooling == "lasttoken" else t[0] for t in tokens])
    torch.testing.assert_close(pooled, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("side", ["right", "left"])
def test_mean_pooling_can_leave_out_the_instruction(tiny_decoder_dir, side):
    model = load_decoder(
        tiny_decoder_dir("llama"), include_prompt=False, normalize=False, padding_side=side, max_seq_length=64
    )
    tokenizer = model[0].tokenizer
    prompt_tokens = 1 + len(tokenizer.tokenize(PROMPT))  # [CLS] + the prompt's word pieces
    # reference: each text alone (no padding), its token states averaged after the prompt
    expected = []
    for text in TEXTS:
        states = model.encode([PROMPT + text], output_value="token_embeddings")[0]
        expected.append(states[prompt_tokens:].mean(dim=0))
    pooled = model.encode(TEXTS, prompt=PROMPT, batch_size=len(TEXTS), convert_to_tensor=True)
    torch.testing.assert_close(pooled, torch.stack(expected), atol=1e-5, rtol=1e-5)
    # and the prompt really is left out: including it gives a different embedding
    with_prompt = load_decoder(tiny_decoder_dir("llama"), normalize=False, padding_side=side, max_seq_length=64)
    assert not torch.allclose(with_prompt.encode(TEXTS, prompt=PROMPT, convert_to_tensor=True), pooled, atol=1e-4)


@pytest.mark.parametrize("arch", ["llama", "qwen2", "qwen2_moe", "olmoe", "mixtral"])
def test_plain_sentence_transformer_reproduces_our_embeddings(tiny_decoder_dir, tmp_path, arch):
    """Must-show 3 (first half): a saved bidirectional decoder encodes the same without embedforge."""
    ours = load_decoder(tiny_decoder_dir(arch), max_seq_length=48)
    saved = save_model(ours, tmp_path / "model", prompts={"query": PROMPT, "document": ""})
    config = json.loads((saved / "config.json").read_text())
    assert config["is_causal"] is False
    plain = SentenceTransformer(str(saved))
    assert plain.max_seq_length == 48
    assert plain[0].tokenizer.padding_side == "right" and plain[0].tokenizer.pad_token is not None
    np.testing.assert_allclose(plain.encode(TEXTS), ours.encode(TEXTS), atol=1e-5)
    np.testing.assert_allclose(plain.encode_query(TEXTS), ours.encode(TEXTS, prompt=PROMPT), atol=1e-5)
    # the causal twin of the same weights differs, so the equality above is about attention, too
    causal = load_decoder(tiny_decoder_dir(arch), bidirectional=False, max_seq_length=48)
    assert np.abs(causal.encode(TEXTS) - plain.encode(TEXTS)).max() > 1e-4


@pytest.mark.parametrize("pooling", ["lasttoken", "cls"])
def test_saved_pooling_and_prompt_exclusion_survive_a_plain_reload(tiny_decoder_dir, tmp_path, pooling):
    ours = load_decoder(tiny_decoder_dir("qwen3"), pooling=pooling, include_prompt=False, padding_side="left")
    saved = save_model(ours, tmp_path / "model", prompts={"query": PROMPT})
    pooling_config = json.loads((saved / "1_Pooling" / "config.json").read_text())
    flag = "pooling_mode_lasttoken" if pooling == "lasttoken" else "pooling_mode_cls_token"
    assert pooling_config[flag] is True and pooling_config["include_prompt"] is False
    plain = SentenceTransformer(str(saved))
    assert plain[0].tokenizer.padding_side == "left"
    np.testing.assert_allclose(plain.encode_query(TEXTS), ours.encode(TEXTS, prompt=PROMPT), atol=1e-5)


def test_instruct_tokenizer_with_chat_template_saves_in_the_widely_read_format(tiny_decoder_dir, tmp_path):
    from transformers import AutoTokenizer

    folder = tmp_path / "chat"
    shutil.copytree(tiny_decoder_dir("llama"), folder)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    tokenizer.chat_template = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}"
    tokenizer.save_pretrained(str(folder))

    ours = load_decoder(folder)
    saved = save_model(ours, tmp_path / "model")
    assert set(json.loads((saved / "sentence_bert_config.json").read_text())) == {"max_seq_length", "do_lower_case"}
    np.testing.assert_allclose(SentenceTransformer(str(saved)).encode(TEXTS), ours.encode(TEXTS), atol=1e-5)
