"""CachedInfoNCELoss gives the loss and parameter gradients of InfoNCELoss on the tiny model."""

from __future__ import annotations

import copy

import pytest
import torch
from sentence_transformers.sentence_transformer.losses import MatryoshkaLoss

from embedforge.errors import ConfigError
from embedforge.losses import CachedInfoNCELoss, InfoNCELoss

COLUMNS = [
    ["how do cats sleep", "capital of france", "rain tomorrow?", "best pizza", "python lists", "tall trees"],
    ["cats nap 16 hours", "paris is the capital", "showers expected", "naples pizza", "list append", "redwoods"],
    ["dogs bark loudly", "lyon is a city", "sunny all week", "sushi rolls", "java arrays", "short grass"],
    ["cats are mammals", "france borders spain", "snow in the alps", "pasta dishes", "c pointers", "oak trees"],
    ["kittens play", "berlin is german", "windy coast", "pizza ovens", "python dicts", "pine forest"],
]


def features(model):
    return [model.preprocess(column) for column in COLUMNS]


def loss_and_grads(model, loss_fn, seed=0, labels=None):
    model.zero_grad()
    torch.manual_seed(seed)
    loss = loss_fn(features(model), labels)
    loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), grads


def assert_same(first, second):
    (loss_a, grads_a), (loss_b, grads_b) = first, second
    torch.testing.assert_close(loss_a, loss_b, rtol=1e-5, atol=1e-6)
    assert grads_a.keys() == grads_b.keys() and len(grads_a) > 10
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], rtol=1e-4, atol=1e-5, msg=name)


CONFIGS = {
    "plain": {},
    "focal_symmetric_fn": {"gamma": 0.5, "symmetric": True, "false_negative_margin": 0.05},
    "in_batch_off": {"in_batch_negatives": False, "gamma": 0.5},
    "mixing": {"mix_pairwise": 2, "mix_listwise": True, "gamma": 0.5},
}


@pytest.mark.parametrize("config", list(CONFIGS))
def test_cached_equals_uncached(tiny_model, config):
    tiny_model.eval()  # dropout masks would differ between chunked and whole-batch forwards
    options = {"temperature": 0.05, **CONFIGS[config]}
    uncached = loss_and_grads(tiny_model, InfoNCELoss(tiny_model, **options))
    cached = loss_and_grads(tiny_model, CachedInfoNCELoss(tiny_model, mini_batch_size=4, **options))
    assert_same(uncached, cached)


def test_cached_equals_uncached_with_class_labels(tiny_model):
    """Same-class masking (labelled rows) is identical under GradCache and under Matryoshka."""
    tiny_model.eval()
    labels = torch.tensor([[0, 1, 2, 3], [1, 0, 2, 3], [0, 1, 2, 3], [2, 0, 1, 3], [1, 0, 2, 3], [3, 0, 1, 2]])
    options = {"temperature": 0.05, "gamma": 0.5, "symmetric": True, "mix_listwise": True}
    uncached = loss_and_grads(tiny_model, InfoNCELoss(tiny_model, **options), labels=labels)
    assert_same(uncached, loss_and_grads(tiny_model, CachedInfoNCELoss(tiny_model, mini_batch_size=4, **options),
                                         labels=labels))  # fmt: skip
    unmasked = loss_and_grads(tiny_model, InfoNCELoss(tiny_model, **options))
    assert abs(uncached[0].item() - unmasked[0].item()) > 1e-6  # rows 0/2 and 1/4 share a class
    dims = {"matryoshka_dims": [32, 16], "matryoshka_weights": [1.0, 0.5]}
    plain = MatryoshkaLoss(tiny_model, InfoNCELoss(tiny_model, **options), **dims)
    cached = MatryoshkaLoss(tiny_model, CachedInfoNCELoss(tiny_model, mini_batch_size=4, **options), **dims)
    assert_same(loss_and_grads(tiny_model, plain, labels=labels), loss_and_grads(tiny_model, cached, labels=labels))


def test_mixing_randomness_is_shared_and_matters(tiny_model):
    tiny_model.eval()
    options = {"temperature": 0.05, "mix_pairwise": 3}
    cached = CachedInfoNCELoss(tiny_model, mini_batch_size=4, **options)
    first = loss_and_grads(tiny_model, cached, seed=1)
    assert_same(first, loss_and_grads(tiny_model, InfoNCELoss(tiny_model, **options), seed=1))
    other_seed = loss_and_grads(tiny_model, cached, seed=2)
    assert abs(first[0].item() - other_seed[0].item()) > 1e-6  # the draws do change the loss


def test_matryoshka_wraps_both_variants_identically(tiny_model):
    tiny_model.eval()
    options = {"temperature": 0.05, "gamma": 0.5, "mix_listwise": True}
    dims = {"matryoshka_dims": [32, 16, 8], "matryoshka_weights": [1.0, 0.3, 0.1]}
    plain = MatryoshkaLoss(tiny_model, InfoNCELoss(tiny_model, **options), **dims)
    cached = MatryoshkaLoss(tiny_model, CachedInfoNCELoss(tiny_model, mini_batch_size=4, **options), **dims)
    result = loss_and_grads(tiny_model, plain)
    assert_same(result, loss_and_grads(tiny_model, cached))
    # ... and the wrapped loss is the weighted sum over truncated, re-normalized embeddings
    with torch.no_grad():
        embeddings = [tiny_model(f)["sentence_embedding"] for f in features(tiny_model)]
        inner = InfoNCELoss(None, **options)
        expected = sum(
            weight
            * inner.compute_loss_from_embeddings([torch.nn.functional.normalize(e[:, :d], dim=-1) for e in embeddings])
            for d, weight in zip(dims["matryoshka_dims"], dims["matryoshka_weights"], strict=True)
        )
    torch.testing.assert_close(result[0], expected, rtol=1e-5, atol=1e-6)


def test_cached_loss_in_eval_mode_needs_no_backward(tiny_model):
    tiny_model.eval()
    cached = CachedInfoNCELoss(tiny_model, mini_batch_size=4, gamma=0.5)
    with torch.no_grad():
        value = cached(features(tiny_model), None)
    reference = loss_and_grads(copy.deepcopy(tiny_model), InfoNCELoss(tiny_model, gamma=0.5))[0]
    torch.testing.assert_close(value, reference, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("argument", "value"), [("mini_batch_size", 0), ("mini_batch_num_tokens", -5), ("gamma", -1)])
def test_bad_arguments(tiny_model, argument, value):
    with pytest.raises(ConfigError, match=argument):
        CachedInfoNCELoss(tiny_model, **{argument: value})
