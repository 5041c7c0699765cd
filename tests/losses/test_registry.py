"""build_loss: names, options, nested Matryoshka specs and the errors a recipe author sees."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from sentence_transformers.sentence_transformer.losses import (
    CoSENTLoss,
    MatryoshkaLoss,
    MultipleNegativesRankingLoss,
)

from embedforge.errors import ConfigError
from embedforge.losses import LOSSES, CachedInfoNCELoss, InfoNCELoss, build_loss, loss_options, register_loss


def test_every_registered_loss_builds_with_defaults(tiny_model):
    for name, cls in LOSSES.items():
        if name == "matryoshka":
            continue
        options = {"teacher_dim": 48} if name == "sdm" else {}
        assert isinstance(build_loss(name, tiny_model, options), cls)
    assert isinstance(build_loss("mnrl", tiny_model), MultipleNegativesRankingLoss)
    assert isinstance(build_loss("cosent", tiny_model), CoSENTLoss)


def test_options_reach_the_loss(tiny_model):
    loss = build_loss("cached_infonce", tiny_model, {"temperature": 0.01, "gamma": 0.5, "mini_batch_size": 8})
    assert isinstance(loss, CachedInfoNCELoss)
    config = loss.get_config_dict()
    assert config["temperature"] == 0.01 and config["gamma"] == 0.5 and config["mini_batch_size"] == 8


def test_matryoshka_from_a_yaml_like_mapping(tiny_model):
    spec = {
        "loss": {"name": "infonce", "temperature": 0.02, "gamma": 0.5},
        "matryoshka_dims": [32, 16, 8],
        "matryoshka_weights": [1.0, 0.3, 0.2],
    }
    loss = build_loss("matryoshka", tiny_model, spec)
    assert isinstance(loss, MatryoshkaLoss) and isinstance(loss.loss, InfoNCELoss)
    assert loss.loss.temperature == 0.02
    assert loss.matryoshka_dims == (32, 16, 8) and loss.matryoshka_weights == (1.0, 0.3, 0.2)
    assert isinstance(
        build_loss("matryoshka", tiny_model, {"loss": "cosent", "matryoshka_dims": [16]}).loss, CoSENTLoss
    )


def test_matryoshka_over_cosent_sums_the_truncated_losses(tiny_model):
    """Seed1.5 applies MRL to CoSENT too: check the wrapper really truncates, renormalizes and weights."""
    tiny_model.eval()
    pairs = [["a man plays guitar", "a cat sleeps", "stocks fall"], ["a person plays music", "a dog runs", "rain"]]
    scores = torch.tensor([4.5, 1.0, 0.2])
    features = [tiny_model.preprocess(column) for column in pairs]
    loss = build_loss(
        "matryoshka", tiny_model, {"loss": "cosent", "matryoshka_dims": [32, 8], "matryoshka_weights": [1, 0.5]}
    )
    value = loss(features, scores)
    with torch.no_grad():
        embeddings = [tiny_model(f)["sentence_embedding"] for f in features]
    cosent = CoSENTLoss(None)
    expected = sum(
        weight * cosent.compute_loss_from_embeddings([F.normalize(e[:, :dim], dim=-1) for e in embeddings], scores)
        for dim, weight in ((32, 1.0), (8, 0.5))
    )
    torch.testing.assert_close(value, expected)


def test_unknown_loss_suggests_the_closest_name(tiny_model):
    with pytest.raises(ConfigError, match=r"unknown loss 'infonse'.*Did you mean 'infonce'"):
        build_loss("infonse", tiny_model)


def test_unknown_option_is_named_and_valid_ones_listed(tiny_model):
    with pytest.raises(ConfigError, match=r"unknown option 'temprature' for loss 'infonce'.*'temperature'") as info:
        build_loss("infonce", tiny_model, {"temprature": 0.02})
    assert "gamma" in str(info.value) and "model" not in loss_options("infonce")
    with pytest.raises(ConfigError, match=r"unknown option 'dims' for loss 'matryoshka'.*matryoshka_dims"):
        build_loss("matryoshka", tiny_model, {"loss": "infonce", "dims": [16]})
    with pytest.raises(ConfigError, match=r"unknown option 'gama' for loss 'infonce'"):
        build_loss("matryoshka", tiny_model, {"loss": {"name": "infonce", "gama": 0.5}, "matryoshka_dims": [16]})


def test_bad_values_become_config_errors(tiny_model):
    with pytest.raises(ConfigError, match=r"gamma=-1"):
        build_loss("infonce", tiny_model, {"gamma": -1})
    with pytest.raises(ConfigError, match=r"loss 'matryoshka'.*embedding dimension"):
        build_loss("matryoshka", tiny_model, {"loss": "infonce", "matryoshka_dims": [64]})
    with pytest.raises(ConfigError, match=r"option 'loss' must be a loss name or a mapping"):
        build_loss("matryoshka", tiny_model, {"loss": {"temperature": 0.1}, "matryoshka_dims": [16]})
    with pytest.raises(ConfigError, match=r"loss 'mnrl'.*Scale"):
        build_loss("mnrl", tiny_model, {"scale": -1.0})


def test_register_loss_rejects_duplicates():
    with pytest.raises(ConfigError, match="already registered"):
        register_loss("infonce", InfoNCELoss)
