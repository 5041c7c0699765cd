"""Decoder-LLM and MoE backbones through ``embedforge train``: bidirectional saves, LoRA, the router loss.

Tiny random Llama / Qwen2 / Qwen2-MoE models train a few steps on the bundled real data with a one-stage
recipe; each saved ``final`` must load with plain ``SentenceTransformer(path)`` and give the embeddings
the trained model gave in memory (for LoRA: *before* the adapters were merged).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from sentence_transformers import SentenceTransformer
from transformers import AutoModel

from embedforge.cli import main
from embedforge.errors import ConfigError
from embedforge.losses.objective import build_objectives, release_objectives, router_aux_coef
from embedforge.losses.router_aux import RouterAuxLoss
from embedforge.models import load_model
from embedforge.models.decoder import probe_bidirectional
from embedforge.models.lora import has_lora
from embedforge.recipes import load_recipe
from embedforge.training.backbones import Backbone
from tests.training.conftest import DATA, train_killed_at, write_recipe

REPO = Path(__file__).resolve().parents[2]
TEXTS = [
    "A man is playing a guitar on the street.",
    "libssl3: Secure Sockets Layer toolkit - shared libraries",
    "short",
]


def decoder_recipe(base: Path, output: Path, *, model: dict | None = None, **stage) -> dict:
    """One train stage: SNLI triplets (instruction on queries) + STS-B (CoSENT), 4 steps, checkpoints every 2."""
    train = {
        "datasets": [
            {
                "name": "snli",
                "path": str(DATA / "snli/triplets.jsonl"),
                "kind": "triplets",
                "max_rows": 64,
                "instruction": "Retrieve semantically similar text",
            },
            {"name": "stsb", "path": str(DATA / "stsb/train.jsonl"), "kind": "sts", "max_rows": 64},
        ],
        "loss": {"temperature": 0.05, "gamma": 0.5},
        "batch_size": 8,
        "max_steps": 4,
        "save_steps": 2,
        "logging_steps": 1,
        "learning_rate": 1e-3,
        "warmup_ratio": 0.0,
        **stage,
    }
    return {
        "name": "tiny-decoder",
        "model": {"base": str(base), "max_seq_length": 32, **(model or {})},
        "output_dir": str(output),
        "seed": 11,
        "stages": {"train": train},
    }


@pytest.fixture
def capture_before_merge(monkeypatch):
    """Record the trained model's embeddings of TEXTS just before the stage merges/saves it."""
    captured: dict = {}
    original = Backbone.finish

    def finish(self, model):
        was_training = model.training
        model.eval()
        captured["embeddings"] = model.encode(TEXTS, convert_to_numpy=True)
        captured["had_lora"] = has_lora(model)
        model.train(was_training)
        return original(self, model)

    monkeypatch.setattr(Backbone, "finish", finish)
    return captured


def _log_history(stage: Path) -> list[dict]:
    state = sorted(stage.glob("checkpoint-*/trainer_state.json"), key=lambda p: int(p.parent.name.split("-")[1]))
    return json.loads(state[-1].read_text())["log_history"]


def _mean_pooled(folder: Path, texts: list[str]) -> np.ndarray:
    """Embeddings computed without sentence-transformers: transformers' AutoModel + masked mean + L2 norm."""
    model = SentenceTransformer(str(folder))  # only for its tokenizer and max length
    tokenizer, max_len = model.tokenizer, model.max_seq_length
    hf_model = AutoModel.from_pretrained(str(folder)).eval()
    batch = tokenizer(texts, padding=True, truncation=True, max_length=max_len, return_tensors="pt")
    with torch.no_grad():
        hidden = hf_model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    return torch.nn.functional.normalize(pooled, dim=-1).numpy()


def _check_final(final: Path, base: Path, captured: dict, *, causal: bool = False) -> SentenceTransformer:
    config = json.loads((final / "config.json").read_text())
    assert config["is_causal"] is causal
    plain = SentenceTransformer(str(final))  # no embedforge code
    assert probe_bidirectional(plain[0].model) is not causal
    embeddings = plain.encode(TEXTS, convert_to_numpy=True)
    np.testing.assert_allclose(embeddings, captured["embeddings"], atol=1e-5)  # == the trained model in memory
    np.testing.assert_allclose(embeddings, load_model(final).encode(TEXTS), atol=1e-5)
    np.testing.assert_allclose(embeddings, _mean_pooled(final, TEXTS), atol=1e-5)
    trained, initial = load_file(str(final / "model.safetensors")), load_file(str(base / "model.safetensors"))
    name = "layers.0.self_attn.q_proj.weight"
    key = next(k for k in trained if k.endswith(name))
    assert not torch.allclose(trained[key], initial[f"model.{name}"]), "training did not change the weights"
    return plain


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_tiny_decoder_trains_bidirectionally_and_loads_without_embedforge(
    arch, tiny_decoder_dir, tmp_path, capture_before_merge
):
    base = tiny_decoder_dir(arch)
    recipe = write_recipe(tmp_path / "r.yaml", decoder_recipe(base, tmp_path / "out"))
    assert main(["train", str(recipe), "--quiet"]) == 0
    stage = tmp_path / "out" / "train"
    losses = [entry["loss"] for entry in _log_history(stage) if "loss" in entry]
    assert len(losses) == 4 and all(math.isfinite(v) for v in losses)
    assert capture_before_merge["had_lora"] is False
    _check_final(stage / "final", base, capture_before_merge)


def test_causal_recipe_stays_causal(tiny_decoder_dir, tmp_path, capture_before_merge):
    base = tiny_decoder_dir("qwen2")
    raw = decoder_recipe(base, tmp_path / "out", model={"bidirectional": False}, max_steps=2)
    assert main(["train", str(write_recipe(tmp_path / "r.yaml", raw)), "--quiet"]) == 0
    _check_final(tmp_path / "out" / "train" / "final", base, capture_before_merge, causal=True)


def test_moe_trains_with_the_router_loss_logged(tiny_decoder_dir, tmp_path, capture_before_merge):
    base = tiny_decoder_dir("qwen2_moe")
    recipe = write_recipe(tmp_path / "r.yaml", decoder_recipe(base, tmp_path / "out"))
    assert main(["train", str(recipe), "--quiet"]) == 0
    stage = tmp_path / "out" / "train"
    logged = [entry for entry in _log_history(stage) if "loss" in entry]
    assert len(logged) == 4
    # tiny Qwen2-MoE: coef 0.001 (config), aux >= 1 (top-2 of 4 experts), so the logged term is >= 0.001
    assert all(math.isfinite(e["loss"]) and e["router_aux_loss"] >= 0.001 for e in logged), logged
    events = b"".join(path.read_bytes() for path in (stage / "runs").rglob("events.out.tfevents*"))
    assert b"train/router_aux_loss" in events  # in TensorBoard too
    summary = json.loads((stage / "stage.json").read_text())["summary"]
    assert summary["router_aux_loss_coef"] == pytest.approx(0.001)
    assert all(text.startswith("RouterAuxLoss(coef=0.001) over ") for text in summary["losses"].values())
    plain = _check_final(stage / "final", base, capture_before_merge)
    trained = load_file(str(stage / "final" / "model.safetensors"))
    router = next(k for k in trained if k.endswith("layers.0.mlp.gate.weight"))
    assert not torch.equal(trained[router], load_file(str(base / "model.safetensors"))[f"model.{router}"])
    assert "mlp.gate" in " ".join(name for name, _ in plain[0].model.named_parameters())


def _stage_setup(recipe_path: Path, stage: str = "train"):
    recipe = load_recipe(recipe_path)
    model = load_model(recipe.model.base, max_seq_length=recipe.model.max_seq_length)
    return recipe, recipe.stages[stage], model


def test_router_loss_term_reaches_the_router_weights(tiny_decoder_dir, tmp_path):
    recipe, stage, model = _stage_setup(
        write_recipe(tmp_path / "r.yaml", decoder_recipe(tiny_decoder_dir("olmoe"), tmp_path / "o"))
    )
    assert router_aux_coef(model, stage) == pytest.approx(model[0].model.config.router_aux_loss_coef)
    snli = next(d for d in stage.datasets if d.name == "snli").resolved()
    losses = build_objectives({"snli": snli}, stage, model)
    assert isinstance(losses["snli"], RouterAuxLoss) and losses["snli"].temperature == 0.05  # forwarded
    model.train()
    parts = losses["snli"]([model.preprocess(TEXTS), model.preprocess(TEXTS[::-1])], None)
    assert set(parts) == {"loss", "router_aux_loss"} and parts["router_aux_loss"].item() > 0
    parts["router_aux_loss"].backward()  # the auxiliary term alone
    routers = [p for name, p in model.named_parameters() if name.endswith("mlp.gate.weight")]
    assert routers and all(p.grad is not None and p.grad.abs().sum() > 0 for p in routers)
    release_objectives(losses)
    assert not losses["snli"].collector._handles  # hooks removed before saving


def test_gradcache_on_moe_is_refused_unless_the_router_loss_is_off(tiny_decoder_dir, tmp_path, capsys):
    base = tiny_decoder_dir("qwen2_moe")
    raw = decoder_recipe(base, tmp_path / "out", gradcache_mini_batch=4)
    recipe = write_recipe(tmp_path / "r.yaml", raw)
    assert main(["train", str(recipe), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "the MoE router load-balancing loss cannot be added to GradCache losses" in err
    assert "router_aux_loss_coef: 0" in err and "Traceback" not in err
    # with the term switched off on purpose, GradCache trains the MoE model
    loaded, stage, model = _stage_setup(
        write_recipe(tmp_path / "off.yaml", {**raw, "output_dir": str(tmp_path / "x")})
    )
    stage.router_aux_loss_coef = 0.0
    snli = next(d for d in stage.datasets if d.name == "snli").resolved()
    assert type(build_objectives({"snli": snli}, stage, model)["snli"]).__name__ == "CachedInfoNCELoss"


def test_lora_run_saves_a_merged_model_and_resumes_after_kill_9(tiny_decoder_dir, tmp_path, capture_before_merge):
    base = tiny_decoder_dir("llama")
    lora = {"lora": {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj", "up_proj"]}}
    reference = write_recipe(tmp_path / "ref.yaml", decoder_recipe(base, tmp_path / "ref", model=lora))
    assert main(["train", str(reference), "--quiet"]) == 0
    stage = tmp_path / "ref" / "train"
    final = stage / "final"
    assert capture_before_merge["had_lora"] is True
    # checkpoints hold only the adapters; `final` is merged: full weights, no adapter files, no peft needed
    assert (stage / "checkpoint-2" / "adapter_model.safetensors").is_file()
    assert not (stage / "checkpoint-2" / "model.safetensors").exists()
    assert not list(final.glob("adapter_*")) and (final / "model.safetensors").is_file()
    assert not any("lora" in key for key in load_file(str(final / "model.safetensors")))
    summary = json.loads((stage / "stage.json").read_text())["summary"]
    assert summary["lora"]["r"] == 4 and 0 < summary["trainable_parameters"] < summary["total_parameters"] / 5
    _check_final(final, base, capture_before_merge)

    killed = write_recipe(tmp_path / "killed.yaml", decoder_recipe(base, tmp_path / "killed", model=lora))
    run = train_killed_at(killed, "train", 3)
    assert run.returncode == -9, run.stderr[-2000:]
    killed_stage = tmp_path / "killed" / "train"
    assert (killed_stage / "checkpoint-2" / "adapter_model.safetensors").is_file()
    assert not (killed_stage / "final").exists()
    assert main(["train", str(killed), "--quiet", "--resume"]) == 0
    resumed, uninterrupted = (
        load_file(str(killed_stage / "final" / "model.safetensors")),
        load_file(str(final / "model.safetensors")),
    )
    assert resumed.keys() == uninterrupted.keys()
    for name in resumed:
        assert (resumed[name] - uninterrupted[name]).abs().max().item() <= 1e-6, name
    history = [e["step"] for e in _log_history(killed_stage) if "loss" in e]
    assert history == [1, 2, 3, 4]  # steps 3-4 ran after the resume, from checkpoint-2


def test_model_options_reach_every_model_a_stage_loads(tiny_decoder_dir, tmp_path):
    from embedforge.models import save_model
    from embedforge.recipes.runner import StageContext

    options = {"bidirectional": False, "dtype": "bfloat16", "padding_side": "left", "attn_implementation": "eager"}
    recipe = load_recipe(
        write_recipe(tmp_path / "r.yaml", decoder_recipe(tiny_decoder_dir("llama"), tmp_path / "o", model=options))
    )
    context = StageContext(recipe, "train", tmp_path, False, {"base": recipe.model.base}, recipe.model.base, {})
    base = context.load_model(None)
    hf_model = base[0].model
    assert hf_model.dtype == torch.bfloat16 and hf_model.config._attn_implementation == "eager"
    assert hf_model.config.is_causal is True and base[0].tokenizer.padding_side == "left"
    # a saved (e.g. previous stage's) model: re-saved right-padded and bidirectional, loaded with the recipe's options
    base[0].tokenizer.padding_side = "right"
    hf_model.config.is_causal = False
    folder = save_model(base, tmp_path / "saved")
    again = context.load_model(str(folder))
    assert again[0].model.config.is_causal is True and again[0].tokenizer.padding_side == "left"
    assert again[0].model.dtype == torch.bfloat16 and again[0].model.config._attn_implementation == "eager"


def test_each_lora_stage_starts_fresh_adapters_on_the_merged_previous_model(tiny_decoder_dir, tmp_path):
    raw = decoder_recipe(
        tiny_decoder_dir("qwen2"), tmp_path / "out", model={"lora": {"r": 2, "alpha": 4}}, max_steps=2
    )
    raw["stages"]["second"] = {**raw["stages"]["train"], "datasets": raw["stages"]["train"]["datasets"][:1]}
    assert main(["train", str(write_recipe(tmp_path / "r.yaml", raw)), "--quiet"]) == 0
    first, second = (
        json.loads((tmp_path / "out" / s / "stage.json").read_text())["summary"] for s in ("train", "second")
    )
    assert second["init"] == str(tmp_path / "out" / "train" / "final")
    assert first["lora"] == second["lora"] and first["trainable_parameters"] == second["trainable_parameters"]
    for stage in ("train", "second"):
        final = tmp_path / "out" / stage / "final"
        assert not list(final.glob("adapter_*")) and (final / "model.safetensors").is_file()
    before, after = (load_file(str(tmp_path / "out" / s / "final" / "model.safetensors")) for s in ("train", "second"))
    assert any(not torch.equal(before[k], after[k]) for k in before), "the second stage changed nothing"


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"lora": {"r": 0}}, r"model\.lora: r: must be a positive integer, got 0"),
        (
            {"lora": {"rank": 8}},
            r"model\.lora\.rank: unknown key\. Valid choices: alpha, dropout, options, r, target_modules",
        ),
        ({"padding_side": "middle"}, r"model: padding_side: must be 'right' or 'left', got 'middle'"),
        ({"bidirectional": "yes"}, r"model\.bidirectional: expected bool or null, got str 'yes'"),
    ],
)
def test_bad_model_options_name_the_key(tiny_decoder_dir, tmp_path, model, message):
    recipe = write_recipe(
        tmp_path / "bad.yaml", decoder_recipe(tiny_decoder_dir("llama"), tmp_path / "o", model=model)
    )
    with pytest.raises(ConfigError, match=rf"bad\.yaml[.:] ?{message}"):
        load_recipe(recipe)
