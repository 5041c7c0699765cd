"""build_loss: names, options, the Matryoshka modifier and the errors a recipe author sees."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from sentence_transformers.sentence_transformer.losses import CoSENTLoss, MultipleNegativesRankingLoss

from embedforge.errors import ConfigError
from embedforge.losses import LOSSES, InfoNCELoss, MatryoshkaLoss, build_loss, loss_options, register_loss


def test_every_registered_loss_builds_with_defaults(tiny_model):
    for name, entry in LOSSES.items():
        options = {"teacher_dim": 48} if name == "sdm" else {}
        assert isinstance(build_loss(name, tiny_model, options), entry.cls)
    assert isinstance(build_loss("mnrl", tiny_model), MultipleNegativesRankingLoss)
    assert isinstance(build_loss("cosent", tiny_model), CoSENTLoss)
    assert {n: e.in_batch_negatives for n, e in LOSSES.items()} == {
        "infonce": "option",
        "cosent": "never",
        "mnrl": "always",
        "sdm": "never",
        "l2_kd": "never",
        "contrastive_kd": "option",
    }


def test_options_reach_the_loss(tiny_model):
    loss = build_loss("infonce", tiny_model, {"temperature": 0.01, "gamma": 0.5})
    config = loss.get_config_dict()
    assert config["temperature"] == 0.01 and config["gamma"] == 0.5


def test_modifiers_are_not_base_losses(tiny_model):
    with pytest.raises(ConfigError, match=r"'matryoshka' is a modifier.*`matryoshka: \{dims"):
        build_loss("matryoshka", tiny_model, {"loss": "infonce", "matryoshka_dims": [16]})
    with pytest.raises(ConfigError, match=r"'cached_infonce' is a modifier.*gradcache_mini_batch"):
        build_loss("cached_infonce", tiny_model)


def test_matryoshka_over_cosent_sums_the_truncated_losses(tiny_model):
    """Seed1.5 applies MRL to CoSENT too: check the wrapper really truncates, renormalizes and weights."""
    tiny_model.eval()
    pairs = [["a man plays guitar", "a cat sleeps", "stocks fall"], ["a person plays music", "a dog runs", "rain"]]
    scores = torch.tensor([4.5, 1.0, 0.2])
    features = [tiny_model.preprocess(column) for column in pairs]
    loss = MatryoshkaLoss(tiny_model, build_loss("cosent", tiny_model), [32, 8], [1, 0.5])
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
    with pytest.raises(ConfigError, match=r"temprature: unknown option for loss 'infonce'.*'temperature'") as info:
        build_loss("infonce", tiny_model, {"temprature": 0.02})
    assert "gamma" in str(info.value) and "model" not in loss_options("infonce")


def test_bad_values_become_config_errors(tiny_model):
    with pytest.raises(ConfigError, match=r"gamma=-1"):
        build_loss("infonce", tiny_model, {"gamma": -1})
    with pytest.raises(ConfigError, match=r"options\.gamma: expected float, got str"):
        build_loss("infonce", tiny_model, {"gamma": "high"})
    with pytest.raises(ConfigError, match=r"loss 'mnrl'.*Scale"):
        build_loss("mnrl", tiny_model, {"scale": -1.0})


def test_register_loss_rejects_duplicates():
    with pytest.raises(ConfigError, match="already registered"):
        register_loss("infonce", InfoNCELoss)
    with pytest.raises(ConfigError, match=r"unknown loss 'infonse'"):
        loss_options("infonse")


def test_every_registry_is_the_one_helper():
    """Six registries were hand-rolled dicts with their own duplicate checks; now one helper serves all."""
    from embedforge.evaluation.types import TASK_TYPES, _load_builtin_types
    from embedforge.merging.soup import MERGE_METHODS
    from embedforge.models.decoder import DECODER_FAMILIES
    from embedforge.models.presets import PRESETS
    from embedforge.recipes import stages  # noqa: F401 - registers the stage types
    from embedforge.recipes.schema import STAGE_TYPES
    from embedforge.utils.registry import Registry

    _load_builtin_types()
    for registry in (LOSSES, MERGE_METHODS, STAGE_TYPES, TASK_TYPES, DECODER_FAMILIES, PRESETS):
        assert isinstance(registry, Registry) and len(registry) > 0
    with pytest.raises(ConfigError, match=r"unknown merge method 'unifrom'\. Did you mean 'uniform'\?"):
        MERGE_METHODS.lookup("unifrom")
    with pytest.raises(ConfigError, match=r"a merge method named 'uniform' is already registered"):
        MERGE_METHODS.register("uniform", MERGE_METHODS["uniform"])
