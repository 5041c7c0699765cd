"""MoE router auxiliary loss: equals transformers' own ``aux_loss``, has router gradients, trains."""

from __future__ import annotations

import math

import pytest
import torch
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
from transformers import AutoModelForCausalLM

from embedforge.errors import ConfigError
from embedforge.losses.router_aux import RouterAuxLoss
from embedforge.models.decoder import load_decoder
from embedforge.models.moe import RouterAuxLossCollector, is_moe, router_aux_loss_coef
from embedforge.models.tiny import TINY_MOE

ANCHORS = ["a man plays a guitar", "the cat sleeps on the warm mat all day", "rain falls"]
POSITIVES = ["someone is playing music", "a pet is resting", "the weather is wet and grey today"]


def _router_weights(model):
    """(name, parameter) of every router: the [num_experts, hidden] ``...gate.weight`` matrices."""
    num_experts = model[0].model.config.num_experts if hasattr(model[0].model.config, "num_experts") else 4
    return [
        (name, parameter)
        for name, parameter in model.named_parameters()
        if name.endswith("gate.weight") and parameter.shape[0] == num_experts
    ]


@pytest.mark.parametrize("arch", TINY_MOE)
def test_aux_loss_matches_transformers_causal_lm_aux_loss(tiny_decoder_dir, arch):
    folder = tiny_decoder_dir(arch)
    model = load_decoder(folder)
    collector = RouterAuxLossCollector(model)
    features = model.preprocess(ANCHORS)  # padded: the mask must exclude pads
    assert (features["attention_mask"] == 0).any()
    model.train()
    model(features)
    ours = collector.pop()
    model(dict(features))  # the trainer's collator gives plain dicts; preprocess() a BatchEncoding
    torch.testing.assert_close(collector.pop(), ours)

    reference = AutoModelForCausalLM.from_pretrained(folder)
    reference.config.is_causal = False
    reference.train()
    out = reference(
        input_ids=features["input_ids"], attention_mask=features["attention_mask"], output_router_logits=True
    )
    torch.testing.assert_close(ours, out.aux_loss, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("arch", TINY_MOE)
def test_aux_loss_is_positive_and_trains_the_routers(tiny_decoder_dir, arch):
    model = load_decoder(tiny_decoder_dir(arch))
    assert is_moe(model)
    collector = RouterAuxLossCollector(model)
    model.train()
    model(model.preprocess(ANCHORS))
    model(model.preprocess(POSITIVES))
    assert len(collector.losses) == 2
    aux = collector.pop()
    assert collector.losses == []
    assert math.isfinite(aux.item()) and aux.item() > 0
    aux.backward()
    routers = _router_weights(model)
    assert len(routers) == model[0].model.config.num_hidden_layers
    for name, weight in routers:
        assert weight.grad is not None and weight.grad.abs().sum() > 0, name


def test_forward_passes_without_gradients_are_not_recorded(tiny_decoder_dir):
    model = load_decoder(tiny_decoder_dir("olmoe"))
    collector = RouterAuxLossCollector(model)
    model.encode(ANCHORS)
    assert collector.pop() is None
    collector.remove()
    model.train()
    model(model.preprocess(ANCHORS))
    assert collector.pop() is None


@pytest.mark.parametrize("arch", TINY_MOE)
def test_wrapped_loss_trains_a_tiny_moe_a_few_steps(tiny_decoder_dir, arch):
    model = load_decoder(tiny_decoder_dir(arch))
    loss = RouterAuxLoss(model, MultipleNegativesRankingLoss(model), coef=0.01)
    routers_before = [weight.detach().clone() for _, weight in _router_weights(model)]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    totals = []
    for _ in range(3):
        features = [model.preprocess(ANCHORS), model.preprocess(POSITIVES)]
        parts = loss(features, None)
        assert set(parts) == {"loss", "router_aux_loss"} and parts["router_aux_loss"] > 0
        total = torch.stack(list(parts.values())).sum()  # as the sentence-transformers trainer does
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        totals.append(total.item())
    assert all(math.isfinite(value) for value in totals)
    assert totals[-1] < totals[0]
    routers_after = [weight for _, weight in _router_weights(model)]
    assert any(not torch.equal(b, a) for b, a in zip(routers_before, routers_after, strict=True))


def test_default_coefficient_is_the_models_own(tiny_decoder_dir):
    model = load_decoder(tiny_decoder_dir("qwen2_moe"))
    assert router_aux_loss_coef(model) == model[0].model.config.router_aux_loss_coef > 0
    assert RouterAuxLoss(model, MultipleNegativesRankingLoss(model)).coef == router_aux_loss_coef(model)
    with pytest.raises(ConfigError, match="coef"):
        RouterAuxLoss(model, MultipleNegativesRankingLoss(model), coef=-1)


def test_dense_models_are_refused(tiny_decoder_dir):
    model = load_decoder(tiny_decoder_dir("llama"))
    assert not is_moe(model)
    with pytest.raises(ConfigError, match="not a mixture-of-experts"):
        RouterAuxLossCollector(model)
