"""Model soups: the averaging math on hand-made state dicts, whole-model merges (LoRA, cocktail), errors, CLI."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
from sentence_transformers import SentenceTransformer

from embedforge.cli import main
from embedforge.data import DatasetConfig
from embedforge.errors import ConfigError
from embedforge.merging import (
    cocktail_weights,
    example_loss,
    load_examples,
    merge_models,
    save_soup,
    uniform_average,
    weighted_average,
)
from embedforge.models import add_lora, load_model, save_model
from embedforge.models.lora import merge_lora

DATA = Path(__file__).resolve().parents[2] / "data" / "train"
TEXTS = ["A man is playing a guitar.", "libssl3: Secure Sockets Layer toolkit - shared libraries"]


def state(seed: int, dtype=torch.float32) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        "layer.weight": torch.randn(3, 4, generator=generator).to(dtype),
        "layer.bias": torch.randn(4, generator=generator).to(dtype),
        "position_ids": torch.arange(5),
    }


def test_weighted_average_is_the_normalized_weighted_sum():
    a, b, c = state(0), state(1), state(2)
    originals = copy.deepcopy([a, b, c])
    merged = weighted_average((s for s in (a, b, c)), [1, 3, 4])  # a generator: consumed one at a time
    for key in ("layer.weight", "layer.bias"):
        torch.testing.assert_close(merged[key], (1 * a[key] + 3 * b[key] + 4 * c[key]) / 8)
    assert torch.equal(merged["position_ids"], torch.arange(5))  # integer tensors are copied, not averaged
    for before, after in zip(originals, (a, b, c), strict=True):  # inputs untouched
        assert all(torch.equal(before[k], after[k]) for k in before)
    uniform = uniform_average([a, b, c])
    torch.testing.assert_close(
        uniform["layer.weight"], (a["layer.weight"] + b["layer.weight"] + c["layer.weight"]) / 3
    )


def test_bf16_ingredients_are_accumulated_in_float32():
    states = [state(i, torch.bfloat16) for i in range(4)]
    merged = uniform_average(states)
    assert merged["layer.weight"].dtype == torch.bfloat16
    exact = sum(s["layer.weight"].float() for s in states) / 4
    torch.testing.assert_close(merged["layer.weight"], exact.to(torch.bfloat16), atol=0, rtol=0)


def test_state_dicts_that_do_not_match_are_errors_naming_the_model():
    a, b = state(0), state(1)
    names = ["runs/a/final", "runs/b/final"]
    with pytest.raises(ConfigError, match=r"cannot merge 'runs/b/final': .*\(missing 'layer.bias'\)"):
        weighted_average([a, {k: v for k, v in b.items() if k != "layer.bias"}], [1, 1], names=names)
    with pytest.raises(ConfigError, match=r"cannot merge model 1: 'layer.weight' has shape \(4, 4\), model 0 has"):
        weighted_average([a, {**b, "layer.weight": torch.zeros(4, 4)}], [1, 1])
    with pytest.raises(ConfigError, match=r"integer tensor 'position_ids' differs"):
        weighted_average([a, {**b, "position_ids": torch.arange(1, 6)}], [1, 1])
    with pytest.raises(ConfigError, match=r"3 weights for 2 models"):
        weighted_average([a, b], [1, 1, 1])
    with pytest.raises(ConfigError, match=r"more models than weights \(1\)"):
        weighted_average([a, b], [1])
    with pytest.raises(ConfigError, match=r"weights\[1\]: a soup weight must be a finite number >= 0, got -1"):
        weighted_average([a, b], [1, -1])


def test_cocktail_weights_are_a_softmax_of_negative_losses():
    losses = [0.5, 1.5, 1.0]
    weights = cocktail_weights(losses, temperature=2.0)
    expected = [math.exp(-x / 2) for x in losses]
    assert weights == pytest.approx([e / sum(expected) for e in expected])
    assert weights[0] > weights[2] > weights[1]
    assert cocktail_weights([3.0, 3.0]) == pytest.approx([0.5, 0.5])
    assert cocktail_weights([0.0, 2000.0], temperature=0.5) == pytest.approx([1.0, 0.0])  # no overflow
    with pytest.raises(ConfigError, match="temperature: must be > 0"):
        cocktail_weights(losses, temperature=0)


@pytest.fixture
def ingredients(tiny_model, tmp_path) -> list[Path]:
    """Three tiny models of one architecture with different weights: plain, plain, LoRA adapter folder."""
    paths = []
    for seed in (1, 2):
        model = copy.deepcopy(tiny_model)
        torch.manual_seed(seed)
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(0.05 * torch.randn_like(parameter))
        paths.append(save_model(model, tmp_path / f"m{seed}", prompts={"query": f"q{seed}: "}))
    lora = copy.deepcopy(tiny_model)
    add_lora(lora, r=2, alpha=4)
    torch.manual_seed(3)
    with torch.no_grad():
        for name, parameter in lora.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.5)
    lora.save(str(tmp_path / "lora"))  # an adapter-only folder, as LoRA training checkpoints are
    assert (tmp_path / "lora" / "adapter_model.safetensors").is_file()
    paths.append(tmp_path / "lora")
    return paths


def test_merge_models_averages_whole_models_and_merges_lora_first(ingredients, tiny_model, tmp_path):
    result = merge_models([str(p) for p in ingredients], method="weighted", weights=[2, 1, 1])
    assert result.weights == pytest.approx([0.5, 0.25, 0.25])
    states = [load_model(p, device="cpu").state_dict() for p in ingredients[:2]]
    states.append(merge_lora(load_model(ingredients[2], device="cpu")).state_dict())
    merged = result.model.state_dict()
    assert set(merged) == set(states[0])
    for key, value in merged.items():
        torch.testing.assert_close(value, 0.5 * states[0][key] + 0.25 * states[1][key] + 0.25 * states[2][key])
    # the LoRA update is part of the soup (ingredient 2 differs from its base)
    key = "0.model.encoder.layer.0.attention.self.query.weight"
    assert not torch.allclose(states[2][key], tiny_model.state_dict()[key], atol=1e-3)
    folder = save_soup(result, tmp_path / "soup", title="tiny soup")
    loaded = SentenceTransformer(str(folder), device="cpu")  # plain sentence-transformers reads it
    assert loaded.prompts["query"] == "q1: "  # the first ingredient's prompts
    torch.testing.assert_close(
        torch.as_tensor(loaded.encode(TEXTS)), torch.as_tensor(result.model.encode(TEXTS)), atol=1e-6, rtol=0
    )
    card = (folder / "README.md").read_text()
    assert "# tiny soup" in card and "0.5000" in card and str(ingredients[2]) in card


def test_merging_models_of_different_architectures_names_the_model(tiny_model_dir, tmp_path):
    from embedforge.models.tiny import build_tiny_model

    llama = build_tiny_model("llama", tmp_path / "llama")
    with pytest.raises(ConfigError, match=rf"cannot merge '{llama}': .*differs from '{tiny_model_dir}'"):
        merge_models([str(tiny_model_dir), str(llama)])
    cls = save_model(load_model(tiny_model_dir, device="cpu"), tmp_path / "cls")
    config = cls / "1_Pooling" / "config.json"
    text = config.read_text().replace('"pooling_mode_cls_token": false', '"pooling_mode_cls_token": true')
    config.write_text(text.replace('"pooling_mode_mean_tokens": true', '"pooling_mode_mean_tokens": false'))
    with pytest.raises(ConfigError, match=rf"cannot merge '{cls}': module 1 \(Pooling\) is configured differently"):
        merge_models([str(tiny_model_dir), str(cls)])
    with pytest.raises(ConfigError, match="a soup needs at least two models"):
        merge_models([str(tiny_model_dir)])


def test_cocktail_weights_come_from_each_model_loss_on_the_examples(ingredients):
    snli = DatasetConfig(name="snli", path=str(DATA / "snli/triplets.jsonl"), kind="triplets", max_rows=8)
    examples = load_examples([snli], seed=0)
    models = [str(p) for p in ingredients[:2]]
    result = merge_models(models, method="cocktail", examples=examples, temperature=0.1)
    losses = [example_loss(load_model(p, device="cpu"), *examples[0]) for p in models]
    assert result.example_losses == pytest.approx(losses)
    assert result.weights == pytest.approx(cocktail_weights(losses, temperature=0.1))
    assert losses[0] != pytest.approx(losses[1])
    with pytest.raises(ConfigError, match="method 'cocktail' needs a few examples"):
        merge_models(models, method="cocktail")


def test_merge_cli(ingredients, tmp_path, capsys):
    out = tmp_path / "cli-soup"
    assert main(["merge", str(ingredients[0]), str(ingredients[1]), "--weights", "1", "3", "--output", str(out)]) == 0
    assert "weighted soup" in capsys.readouterr().out
    merged = SentenceTransformer(str(out), device="cpu").state_dict()
    a, b = (load_model(p, device="cpu").state_dict() for p in ingredients[:2])
    key = "0.model.embeddings.word_embeddings.weight"
    torch.testing.assert_close(merged[key], 0.25 * a[key] + 0.75 * b[key])
    assert main(["merge", str(ingredients[0]), "--output", str(tmp_path / "x")]) == 2
    assert "a soup needs at least two models" in capsys.readouterr().err
    assert main(["merge", str(ingredients[0]), str(ingredients[1]), "--weights", "1", "--output", "x"]) == 2
    assert "1 weights for 2 models" in capsys.readouterr().err
