"""Tiny random decoders train a few steps with a plain sentence-transformers loss (the trainer-level
version of this test lives with the training engine)."""

from __future__ import annotations

import math

import pytest
import torch
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

from embedforge.models.decoder import is_bidirectional, load_decoder
from embedforge.models.lora import add_lora

ANCHORS = ["a man plays a guitar", "the cat sleeps on the warm mat all day", "rain falls"]
POSITIVES = ["someone is playing music", "a pet is resting", "the weather is wet and grey today"]


def _train(model, steps=3, lr=1e-3):
    loss_fn = MultipleNegativesRankingLoss(model)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        loss = loss_fn([model.preprocess(ANCHORS), model.preprocess(POSITIVES)], None)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_bidirectional_decoder_trains(tiny_decoder_dir, arch):
    model = load_decoder(tiny_decoder_dir(arch))
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    losses = _train(model)
    assert all(math.isfinite(value) for value in losses) and losses[-1] < losses[0]
    changed = [name for name, p in model.named_parameters() if not torch.equal(before[name], p)]
    assert any("layers.0.self_attn" in name for name in changed)
    assert is_bidirectional(model)  # training does not touch the attention switch


def test_lora_decoder_trains_only_adapters(tiny_decoder_dir):
    model = add_lora(load_decoder(tiny_decoder_dir("qwen2")), r=4, alpha=8)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    losses = _train(model, lr=1e-2)
    assert losses[-1] < losses[0]
    changed = {name for name, p in model.named_parameters() if not torch.equal(before[name], p)}
    assert changed and all("lora_" in name for name in changed)
