"""Padding-free (packed) batches give the padded batches' embeddings and gradients.

For an encoder (BERT), a decoder (Qwen2) and an MoE decoder (Qwen2-MoE), bidirectional and causal: the same
texts embedded from a padded batch (sentence-transformers' ``preprocess``, SDPA) and from one packed row
(:class:`~embedforge.data.collator.PretokenizedCollator`, ``embedforge_packed`` attention) agree to 1e-5 in
the embeddings and in every parameter's gradient of a loss over them.
"""

from __future__ import annotations

import copy

import pytest
import torch

TEXTS = [
    "a short one",
    "a much longer sentence about debian packages, their summaries and their descriptions",
    "x",
    "the cat sat on the mat, and then it sat on the other mat as well",
    "embedding models pool every token of the text",
]
CASES = [("bert", None), ("qwen2", True), ("qwen2", False), ("qwen2_moe", True), ("qwen2_moe", False)]


def _model(arch: str, bidirectional: bool | None, tiny_bert_dir, tiny_decoder_dir):
    from embedforge.models import load_model

    if arch == "bert":
        return load_model(tiny_bert_dir, max_seq_length=64)
    model = load_model(tiny_decoder_dir(arch), max_seq_length=64)
    model[0].auto_model.config.is_causal = not bidirectional
    return model


def _embed_and_grads(model, features):
    model.zero_grad()
    embeddings = model(features)["sentence_embedding"]  # (B, D)
    weights = torch.linspace(-1.0, 1.0, embeddings.numel()).reshape(embeddings.shape)
    (embeddings * weights).sum().backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    return embeddings.detach(), grads


@pytest.mark.parametrize(("arch", "bidirectional"), CASES, ids=[f"{a}-{b}" for a, b in CASES])
def test_packed_embeddings_and_gradients_equal_padded(arch, bidirectional, tiny_bert_dir, tiny_decoder_dir):
    from embedforge.data.collator import pretokenized_collator
    from embedforge.models.packed_attention import enable_packed_attention

    model = _model(arch, bidirectional, tiny_bert_dir, tiny_decoder_dir)
    model.eval()  # no dropout: the two passes must see the same network
    padded = model.preprocess(TEXTS)
    assert padded["attention_mask"].sum() < padded["attention_mask"].numel()  # the padded batch does pad
    ref_embeddings, ref_grads = _embed_and_grads(model, dict(padded))

    packed_model = copy.deepcopy(model)
    enable_packed_attention(packed_model)
    batch = pretokenized_collator(packed_model, packing=True)([{"text": t} for t in TEXTS])
    features = {k[len("text_") :]: v for k, v in batch.items()}
    assert features["input_ids"].shape == (1, int(padded["attention_mask"].sum()))  # real tokens only
    embeddings, grads = _embed_and_grads(packed_model, features)

    assert torch.allclose(embeddings, ref_embeddings, atol=1e-5, rtol=0)
    assert grads.keys() == ref_grads.keys() and len(grads) > 5
    for name, grad in grads.items():
        assert torch.allclose(grad, ref_grads[name], atol=1e-5, rtol=1e-4), name


def test_causal_and_bidirectional_differ(tiny_decoder_dir):
    """The causal case is not the bidirectional one in disguise: packing keeps each mode's own attention."""
    from embedforge.data.collator import pretokenized_collator
    from embedforge.models import load_model
    from embedforge.models.packed_attention import enable_packed_attention

    outputs = []
    for causal in (True, False):
        model = load_model(tiny_decoder_dir("qwen2"), max_seq_length=64)
        model[0].auto_model.config.is_causal = causal
        enable_packed_attention(model)
        batch = pretokenized_collator(model)([{"text": t} for t in TEXTS])
        with torch.no_grad():
            outputs.append(model({k[5:]: v for k, v in batch.items()})["sentence_embedding"])
    assert not torch.allclose(outputs[0], outputs[1], atol=1e-3)


def test_packed_attention_falls_back_to_sdpa_for_padded_batches(tiny_bert_dir):
    """After switching, a padded batch (e.g. ``encode`` at evaluation) still gives SDPA's result."""
    from embedforge.models import load_model
    from embedforge.models.packed_attention import PACKED_ATTENTION, disable_packed_attention, enable_packed_attention

    model = load_model(tiny_bert_dir, max_seq_length=64)
    reference = model.encode(TEXTS, convert_to_tensor=True)
    previous = enable_packed_attention(model)
    assert model[0].auto_model.config._attn_implementation == PACKED_ATTENTION
    assert torch.allclose(model.encode(TEXTS, convert_to_tensor=True), reference, atol=1e-6)
    disable_packed_attention(model, previous)
    assert model[0].auto_model.config._attn_implementation == previous


def test_pack_token_ids_layout():
    from embedforge.models.packed_attention import pack_token_ids

    packed = pack_token_ids([[5, 6, 7], [8], [9, 10]], position_offset=2, token_type_ids=True)
    assert packed["input_ids"].tolist() == [[5, 6, 7, 8, 9, 10]]
    assert packed["position_ids"].tolist() == [[2, 3, 4, 2, 2, 3]]
    assert packed["cu_seq_lens_q"].tolist() == [0, 3, 4, 6]
    assert packed["max_length_q"] == 3
    assert packed["token_type_ids"].shape == (1, 6)
    with pytest.raises(ValueError, match="at least one token"):
        pack_token_ids([[1], []])
