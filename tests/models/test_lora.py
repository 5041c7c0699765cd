"""LoRA on a bidirectional decoder: attach, train-only-adapters, merge, save, plain reload (must-show 3)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from peft.tuners.tuners_utils import BaseTunerLayer
from sentence_transformers import SentenceTransformer

from embedforge.errors import ConfigError
from embedforge.models import save_model
from embedforge.models.decoder import load_decoder
from embedforge.models.lora import add_lora, has_lora, merge_lora, save_merged

TEXTS = ["A man is playing a guitar.", "Cats sleep all day long.", "Embeddings map text to vectors."]


def _perturbed_lora_model(folder, seed=0):
    """A LoRA model whose adapters really change the output (lora_B starts at zero)."""
    model = load_decoder(folder, max_seq_length=32)
    add_lora(model, r=4, alpha=8)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.copy_(0.5 * torch.randn(parameter.shape, generator=generator))
    return model


@pytest.mark.parametrize("arch", ["llama", "qwen2_moe"])
def test_merged_lora_model_reloads_identically_without_peft(tiny_decoder_dir, tmp_path, arch):
    """Must-show 3 (second half): plain SentenceTransformer(path) of the merged model == the LoRA model."""
    model = _perturbed_lora_model(tiny_decoder_dir(arch))
    with_adapters = model.encode(TEXTS)
    base = load_decoder(tiny_decoder_dir(arch), max_seq_length=32).encode(TEXTS)
    assert np.abs(with_adapters - base).max() > 1e-3, "the perturbed adapters must matter"

    merged = merge_lora(model)
    assert merged is model and not has_lora(merged)
    np.testing.assert_allclose(merged.encode(TEXTS), with_adapters, atol=1e-5)

    saved = save_model(merged, tmp_path / "merged")
    assert not (saved / "adapter_config.json").exists() and (saved / "model.safetensors").is_file()
    assert json.loads((saved / "config.json").read_text())["is_causal"] is False
    plain = SentenceTransformer(str(saved))
    assert not any(isinstance(module, BaseTunerLayer) for module in plain.modules())
    np.testing.assert_allclose(plain.encode(TEXTS), with_adapters, atol=1e-5)


def test_only_adapter_weights_train(tiny_decoder_dir):
    model = load_decoder(tiny_decoder_dir("llama"))
    add_lora(model, r=4, alpha=8)
    assert has_lora(model)
    trainable = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
    assert trainable and all("lora_" in name for name in trainable)
    # all-linear reaches attention and MLP projections
    assert any("q_proj" in name for name in trainable) and any("down_proj" in name for name in trainable)

    features = model.preprocess(TEXTS)
    model.train()
    model(features)["sentence_embedding"].sum().backward()
    grads = {name: parameter.grad for name, parameter in model.named_parameters() if parameter.grad is not None}
    assert set(grads) <= trainable and any(grad.abs().sum() > 0 for grad in grads.values())


def test_save_merged_leaves_the_training_model_untouched(tiny_decoder_dir, tmp_path):
    model = _perturbed_lora_model(tiny_decoder_dir("qwen2"), seed=1)
    expected = model.encode(TEXTS)
    saved = save_merged(model, tmp_path / "checkpoint")
    assert has_lora(model)
    np.testing.assert_allclose(SentenceTransformer(str(saved)).encode(TEXTS), expected, atol=1e-5)


def test_merging_a_model_without_adapters_changes_nothing(tiny_decoder_dir):
    model = load_decoder(tiny_decoder_dir("llama"))
    before = model.encode(TEXTS)
    np.testing.assert_array_equal(merge_lora(model).encode(TEXTS), before)


def test_bad_lora_arguments_are_clear_errors(tiny_decoder_dir):
    model = load_decoder(tiny_decoder_dir("llama"))
    with pytest.raises(ConfigError, match="rank"):
        add_lora(model, r=0)
    with pytest.raises(ConfigError, match="dropout"):
        add_lora(model, dropout=1.5)
