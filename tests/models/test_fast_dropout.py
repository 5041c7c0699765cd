"""Fast dropout: the distribution of nn.Dropout, the same attention as SDPA, restored after training."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F


def test_dropout_mask_drops_p_of_the_elements_and_keeps_the_expectation():
    from embedforge.models.fast_dropout import dropout_mask, random_bits

    torch.manual_seed(0)
    mask = dropout_mask((1000, 1000), 0.1)
    scale = 1 / (1 - 6554 / 65536)  # p rounded to 1/65536, scale from the rounded p
    assert mask.dtype == torch.float32 and mask.shape == (1000, 1000)
    assert mask.unique().tolist() == [0.0, pytest.approx(scale)]
    dropped = (mask == 0).float()
    assert abs(dropped.mean().item() - 0.1) < 1e-3  # 1e6 draws: std 3e-4
    assert abs(mask.mean().item() - 1.0) < 4e-3  # the expectation is kept
    rows, cols = dropped.mean(1), dropped.mean(0)
    assert rows.std() < 0.02 and cols.std() < 0.02  # no row or column pattern from cutting words into draws
    assert torch.equal(dropout_mask((4096,), 0.0), torch.ones(4096))
    assert dropout_mask((3, 5, 7), 0.5, torch.float64).shape == (3, 5, 7)  # a count not a multiple of 4
    bits = random_bits(400_000).long()
    assert bits.min() == -32768 and bits.max() == 32767  # all 16 bits of every draw are random
    assert abs(bits.float().mean().item()) < 200  # uniform: mean 0, std of the mean 30
    for lane in range(4):  # each of a word's four draws is uniform on its own
        assert abs(bits[lane::4].float().mean().item()) < 400
    torch.manual_seed(1)
    again = random_bits(1000)
    torch.manual_seed(1)
    assert torch.equal(random_bits(1000), again)  # torch's seed decides the draws
    with pytest.raises(ValueError, match="dropout probability"):
        dropout_mask((4,), 1.0)


def test_fast_dropout_module_forward_backward_eval_and_seed():
    from embedforge.models.fast_dropout import FastDropout

    layer = FastDropout(0.25)
    assert isinstance(layer, torch.nn.Dropout) and layer.p == 0.25
    x = torch.ones(64, 128, requires_grad=True)
    torch.manual_seed(3)
    out = layer(x)
    kept = out != 0
    assert 0.2 < 1 - kept.float().mean().item() < 0.3
    assert torch.allclose(out[kept], torch.full_like(out[kept], 1 / 0.75))
    out.sum().backward()
    assert torch.equal(x.grad, out.detach())  # d(out)/dx = the same mask times the same scale
    torch.manual_seed(3)
    assert torch.equal(layer(x), out)  # the default generator: seeds (and GradCache's replays) reproduce it
    layer.eval()
    assert layer(x) is x


@pytest.mark.parametrize("case", ["padding-mask", "additive-mask", "causal", "gqa", "no-mask"])
def test_math_attention_equals_sdpa_without_dropout(case):
    from embedforge.models.fast_dropout import math_attention

    torch.manual_seed(0)
    batch, heads, length, dim = 3, 4, 7, 8
    q = torch.randn(batch, heads, length, dim, dtype=torch.float64)
    kv_heads = 2 if case == "gqa" else heads
    k, v = (torch.randn(batch, kv_heads, length, dim, dtype=torch.float64) for _ in range(2))
    lengths = torch.tensor([7, 4, 2])
    keys = torch.arange(length)[None, :] < lengths[:, None]
    mask, causal = None, case == "causal"
    if case in ("padding-mask", "gqa"):
        mask = keys[:, None, None, :]
    if case == "additive-mask":
        mask = torch.zeros(batch, 1, 1, length, dtype=torch.float64).masked_fill(~keys[:, None, None, :], -1e30)
    ours = math_attention(q, k, v, mask, dropout=0.0, scaling=0.3, is_causal=causal)
    kr = k.repeat_interleave(heads // kv_heads, 1)
    vr = v.repeat_interleave(heads // kv_heads, 1)
    reference = F.scaled_dot_product_attention(q, kr, vr, attn_mask=mask, is_causal=causal, scale=0.3)
    assert torch.allclose(ours, reference, atol=1e-10)


def test_math_attention_dropout_is_dropout_of_the_attention_weights():
    from embedforge.models.fast_dropout import dropout_keep, dropout_mask, math_attention

    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 4, dtype=torch.float64) for _ in range(3))
    torch.manual_seed(11)
    ours = math_attention(q, k, v, None, dropout=0.2, scaling=0.5)
    torch.manual_seed(11)
    mask = dropout_mask((2, 3, 5, 5), 0.2, torch.float64)
    weights = torch.softmax(q @ k.transpose(-1, -2) * 0.5, dim=-1)
    assert (mask == 0).any()
    assert torch.allclose(ours, (weights * mask) @ v, atol=1e-12)
    torch.manual_seed(11)
    keep, scale = dropout_keep((2, 3, 5, 5), 0.2)
    assert keep.dtype == torch.bool and torch.equal(keep.double() * scale, mask)  # the same draw, as a boolean


def test_enable_keeps_eval_outputs_trains_with_cheap_masks_and_disable_restores(tiny_model):
    from embedforge.models import fast_dropout as fd

    model = tiny_model
    config = model[0].auto_model.config
    assert config.hidden_dropout_prob > 0 and config.attention_probs_dropout_prob > 0
    assert fd.has_dropout(model)
    texts = ["how do cats sleep", "the capital of france is paris, a city on the seine"]
    features = model.preprocess(texts)
    model.eval()
    with torch.no_grad():
        before = model(dict(features))["sentence_embedding"]
    state = fd.enable_fast_dropout(model)
    assert config._attn_implementation == "embedforge_sdpa"
    assert not any(type(m) is torch.nn.Dropout for m in model.modules())
    assert any(isinstance(m, fd.FastDropout) for m in model.modules())
    with torch.no_grad():
        assert torch.allclose(model(dict(features))["sentence_embedding"], before, atol=1e-6)  # eval: SDPA, no drop

    calls = []
    original = fd.dropout_keep

    def counting(shape, p, *args):
        calls.append((tuple(shape), p))
        return original(shape, p, *args)

    model.train()
    fd.dropout_keep = counting
    try:
        torch.manual_seed(0)
        trained = model(dict(features))["sentence_embedding"]
    finally:
        fd.dropout_keep = original
    trained.sum().backward()
    assert not torch.allclose(trained, before, atol=1e-4)  # dropout is on in training
    heads = config.num_attention_heads
    attention_draws = [shape for shape, _ in calls if len(shape) == 4 and shape[1] == heads]
    assert len(attention_draws) == config.num_hidden_layers  # every layer's attention weights dropped
    assert any(len(shape) == 3 for shape, _ in calls)  # and the hidden states

    fd.disable_fast_dropout(model, state)
    assert config._attn_implementation == "sdpa"
    assert not any(isinstance(m, fd.FastDropout) for m in model.modules())
    assert not any(hasattr(m, fd.FLAG) for m in model.modules())
    model.eval()
    with torch.no_grad():
        assert model(dict(features))["sentence_embedding"].shape == before.shape


def test_packed_regrouped_attention_takes_the_math_path_like_sdpa():
    from embedforge.models.packed_attention import _regrouped_attention

    torch.manual_seed(0)
    lengths = [5, 2, 7]
    cu = torch.tensor([0, 5, 7, 14])
    q, k, v = (torch.randn(1, 4, 14, 8) for _ in range(3))  # (1, heads, packed tokens, head dim)
    for causal in (False, True):
        sdpa = _regrouped_attention(q, k, v, cu, max(lengths), causal, 0.35, 0.0, 1)
        math = _regrouped_attention(q, k, v, cu, max(lengths), causal, 0.35, 0.0, 1, fast_dropout=True)
        assert torch.allclose(sdpa, math, atol=1e-5), causal


def test_gradcache_replays_the_same_fast_dropout_masks(tiny_model):
    """GradCache re-embeds with the RNG state of its first pass: with fast dropout on in training, its loss and
    gradients still equal the uncached loss's."""
    from embedforge.losses import CachedInfoNCELoss, InfoNCELoss
    from embedforge.models.fast_dropout import enable_fast_dropout

    enable_fast_dropout(tiny_model)
    tiny_model.train()
    rows = {
        "anchor": ["how do cats sleep", "capital of france", "rain tomorrow", "best pizza in naples"],
        "positive": ["cats nap all day", "paris is the capital", "showers expected", "naples pizza"],
    }
    features = [dict(tiny_model.preprocess(texts)) for texts in rows.values()]
    results = []
    for make in (InfoNCELoss, lambda model: CachedInfoNCELoss(model, mini_batch_size=4)):
        model = copy.deepcopy(tiny_model)
        torch.manual_seed(5)
        value = make(model)([dict(f) for f in features], None)
        value.backward()
        results.append((value.detach(), model[0].auto_model.embeddings.word_embeddings.weight.grad.clone()))
    assert torch.allclose(results[0][0], results[1][0], atol=1e-5)
    assert torch.allclose(results[0][1], results[1][1], atol=1e-5)
