"""Speed options: the pre-tokenizing collator, packed training, bf16 weights with fp32 master weights."""

from __future__ import annotations

import copy

import pytest
import torch
from datasets import Dataset, DatasetDict

ROWS = {
    "anchor": ["how do cats sleep", "capital of france", "rain tomorrow", "best pizza in the whole town of naples"],
    "positive": ["cats nap all day", "paris is the capital", "showers expected", "naples pizza"],
    "negative_1": ["dogs bark", "lyon is a city", "sunny all week long in the south", "sushi rolls"],
}


def _args(tmp_path, **extra):
    from sentence_transformers import SentenceTransformerTrainingArguments

    return SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path / "run"),
        per_device_train_batch_size=4,
        max_steps=2,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        **extra,
    )


def test_collator_pads_like_sentence_transformers_and_tokenizes_each_text_once(tiny_model):
    from embedforge.data.collator import pretokenized_collator

    calls = []

    def counting(texts, **kwargs):
        calls.extend(texts)
        return tiny_model.preprocess(texts, **kwargs)

    collator = pretokenized_collator(tiny_model, prompts={"anchor": "query: "}, packing=False)
    collator.preprocess_fn = counting
    rows = [dict(zip(ROWS, values, strict=True)) for values in zip(*ROWS.values(), strict=True)]
    assert collator.warm(Dataset.from_dict(ROWS)) == 12
    first = collator(rows)
    again = collator(rows)
    assert len(calls) == 12  # every text once, at warm-up; the batches only looked up
    for column in ROWS:
        prompt = "query: " if column == "anchor" else None
        expected = tiny_model.preprocess([r[column] for r in rows], prompt=prompt)
        for key in ("input_ids", "attention_mask", "token_type_ids"):
            assert torch.equal(first[f"{column}_{key}"], expected[key]), (column, key)
            assert torch.equal(again[f"{column}_{key}"], expected[key])
        assert first.get(f"{column}_prompt_length") == expected.get("prompt_length")


def test_packed_loss_equals_padded_loss_with_gradcache(tiny_model):
    """InfoNCE (plain and GradCache mini-batches of 2) over a packed batch = over sentence-transformers' batch."""
    from sentence_transformers.sentence_transformer.data_collator import SentenceTransformerDataCollator

    from embedforge.data.collator import pretokenized_collator
    from embedforge.losses import CachedInfoNCELoss, InfoNCELoss
    from embedforge.models.packed_attention import enable_packed_attention

    tiny_model.eval()
    rows = [dict(zip(ROWS, values, strict=True)) for values in zip(*ROWS.values(), strict=True)]
    padded = SentenceTransformerDataCollator(preprocess_fn=tiny_model.preprocess)(rows)
    packed_model = copy.deepcopy(tiny_model)
    enable_packed_attention(packed_model)
    packed = pretokenized_collator(packed_model)(rows)
    for make in (InfoNCELoss, lambda model: CachedInfoNCELoss(model, mini_batch_size=2)):
        losses = []
        for model, batch in ((tiny_model, padded), (packed_model, packed)):
            loss = make(model)
            features = [{k[len(c) + 1 :]: v for k, v in batch.items() if k.startswith(c + "_")} for c in ROWS]
            model.zero_grad()
            value = loss(features, None)
            value.backward()
            grad = model[0].auto_model.embeddings.word_embeddings.weight.grad.detach().clone()
            losses.append((value.detach(), grad))
        assert torch.allclose(losses[0][0], losses[1][0], atol=1e-5), make
        assert torch.allclose(losses[0][1], losses[1][1], atol=1e-5), make


def test_trainer_trains_packed_and_restores_attention(tiny_model, tmp_path):
    from embedforge.data.collator import PretokenizedCollator
    from embedforge.losses import build_loss
    from embedforge.training.speed import TrainingSpeed
    from embedforge.training.trainer import EmbedforgeTrainer

    before = [p.detach().clone() for p in tiny_model.parameters()]
    data = DatasetDict({"a": Dataset.from_dict(ROWS), "b": Dataset.from_dict(ROWS)})
    losses = {name: build_loss("infonce", tiny_model, {}) for name in data}
    trainer = EmbedforgeTrainer(
        model=tiny_model, args=_args(tmp_path), train_dataset=data, loss=losses, speed=TrainingSpeed(packing=True)
    )
    assert isinstance(trainer.data_collator, PretokenizedCollator) and trainer.data_collator.packing
    assert tiny_model[0].auto_model.config._attn_implementation == "embedforge_packed"
    batch = next(iter(trainer.get_train_dataloader()))
    assert batch["anchor_input_ids"].shape[0] == 1 and "anchor_cu_seq_lens_q" in batch  # packed
    result = trainer.train()
    assert torch.isfinite(torch.tensor(result.training_loss))
    assert any(not torch.equal(b, p.detach()) for b, p in zip(before, tiny_model.parameters(), strict=True))
    assert tiny_model[0].auto_model.config._attn_implementation == "sdpa"


def test_packing_auto_packs_a_supported_model_and_pretokenize_off_uses_the_plain_collator(tiny_model, tmp_path):
    from sentence_transformers.sentence_transformer.data_collator import SentenceTransformerDataCollator

    from embedforge.data.collator import PretokenizedCollator
    from embedforge.losses import build_loss
    from embedforge.training.speed import TrainingSpeed
    from embedforge.training.trainer import EmbedforgeTrainer

    loss = build_loss("infonce", tiny_model, {})
    data = Dataset.from_dict(ROWS)
    packed = EmbedforgeTrainer(
        model=tiny_model,
        args=_args(tmp_path),
        train_dataset=data,
        loss=loss,
        speed=TrainingSpeed(packing="auto", fast_dropout=False),
    )
    assert isinstance(packed.data_collator, PretokenizedCollator) and packed.data_collator.packing
    assert tiny_model[0].auto_model.config._attn_implementation == "embedforge_packed"
    packed.train()
    assert tiny_model[0].auto_model.config._attn_implementation == "sdpa"
    padded = EmbedforgeTrainer(
        model=tiny_model, args=_args(tmp_path), train_dataset=data, loss=loss, speed=TrainingSpeed(packing=False)
    )
    assert isinstance(padded.data_collator, PretokenizedCollator) and not padded.data_collator.packing
    plain = EmbedforgeTrainer(
        model=tiny_model, args=_args(tmp_path), train_dataset=data, loss=loss, speed=TrainingSpeed(pretokenize=False)
    )
    assert type(plain.data_collator) is SentenceTransformerDataCollator


def test_cpu_training_defaults_to_fast_dropout_and_restores_the_model(tiny_model, tmp_path):
    from embedforge.losses import build_loss
    from embedforge.models.embedding_grad import MergedGradEmbedding
    from embedforge.models.fast_dropout import FastDropout
    from embedforge.training.speed import TrainingSpeed
    from embedforge.training.trainer import EmbedforgeTrainer

    config = tiny_model[0].auto_model.config
    loss = build_loss("infonce", tiny_model, {})
    trainer = EmbedforgeTrainer(
        model=tiny_model,
        args=_args(tmp_path),
        train_dataset=Dataset.from_dict(ROWS),
        loss=loss,
        speed=TrainingSpeed(packing=False),
    )
    assert config._attn_implementation == "embedforge_sdpa"  # auto: CPU and a model with dropout
    assert any(isinstance(m, FastDropout) for m in tiny_model.modules())
    embedding = tiny_model[0].auto_model.get_input_embeddings()
    assert type(embedding) is MergedGradEmbedding  # auto: CPU, one process
    before = embedding.weight.detach().clone()
    seen = []
    hook = (
        tiny_model[0]
        .auto_model.encoder.layer[0]
        .output.dropout.register_forward_hook(lambda module, args, out: seen.append(type(module).__name__))
    )
    result = trainer.train()
    hook.remove()
    assert seen and set(seen) == {"FastDropout"}  # the training steps ran through it
    assert torch.isfinite(torch.tensor(result.training_loss))
    assert config._attn_implementation == "sdpa"  # the saved and served model is the usual one
    assert not any(isinstance(m, FastDropout) for m in tiny_model.modules())
    assert type(embedding) is torch.nn.Embedding
    assert not torch.equal(embedding.weight, before)  # its merged gradient reached the optimizer

    off = EmbedforgeTrainer(
        model=tiny_model,
        args=_args(tmp_path),
        train_dataset=Dataset.from_dict(ROWS),
        loss=loss,
        speed=TrainingSpeed(fast_dropout=False, packing=False),
    )
    assert config._attn_implementation == "sdpa" and off._fast_dropout is None

    packed = EmbedforgeTrainer(  # the default: packed batches, whose regrouped attention drops with cheap masks
        model=tiny_model, args=_args(tmp_path), train_dataset=Dataset.from_dict(ROWS), loss=loss
    )
    assert config._attn_implementation == "embedforge_packed" and packed._fast_dropout is not None
    from embedforge.models import fast_dropout as fd

    shapes = []
    original = fd.dropout_keep
    fd.dropout_keep = lambda shape, *args: shapes.append(tuple(shape)) or original(shape, *args)
    try:
        packed.train()
    finally:
        fd.dropout_keep = original
    heads = config.num_attention_heads
    assert any(len(shape) == 4 and shape[0] == heads for shape in shapes)  # head-major attention weights
    assert config._attn_implementation == "sdpa"


def test_bf16_weights_train_with_fp32_master_weights(tiny_model, tmp_path):
    from embedforge.losses import build_loss
    from embedforge.training.speed import MasterWeightAdamW, TrainingSpeed
    from embedforge.training.trainer import EmbedforgeTrainer

    loss = build_loss("infonce", tiny_model, {})
    speed = TrainingSpeed(bf16_weights=True, packing=False)
    trainer = EmbedforgeTrainer(
        model=tiny_model, args=_args(tmp_path), train_dataset=Dataset.from_dict(ROWS), loss=loss, speed=speed
    )
    assert next(tiny_model.parameters()).dtype == torch.bfloat16
    assert trainer.args.mixed_precision == "no"  # no autocast over bf16 weights
    trainer.train()
    optimizer = trainer.optimizer.optimizer if hasattr(trainer.optimizer, "optimizer") else trainer.optimizer
    assert isinstance(optimizer, MasterWeightAdamW)
    masters = [m for _, m in optimizer._pairs]
    assert all(m.dtype == torch.float32 for m in masters)
    assert all(torch.equal(p.detach(), m.to(torch.bfloat16)) for p, m in optimizer._pairs)


def test_master_weight_adamw_matches_adamw_in_fp32_and_keeps_small_updates():
    from embedforge.training.speed import MasterWeightAdamW

    torch.manual_seed(0)
    plain = torch.nn.Linear(8, 4)
    mastered = copy.deepcopy(plain)
    reference = torch.optim.AdamW(plain.parameters(), lr=1e-2, weight_decay=0.1)
    optimizer = MasterWeightAdamW(mastered.parameters(), lr=1e-2, weight_decay=0.1)
    for _ in range(3):
        x = torch.randn(5, 8)
        for model, opt in ((plain, reference), (mastered, optimizer)):
            opt.zero_grad()
            model(x).square().sum().backward()
            opt.step()
    for a, b in zip(plain.parameters(), mastered.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    restored = MasterWeightAdamW(copy.deepcopy(mastered).parameters(), lr=1e-2)
    restored.load_state_dict(optimizer.state_dict())
    assert restored.state_dict()["inner"]["state"][0]["step"] == 3

    # updates far below bf16's resolution still add up in the fp32 masters
    weight = torch.nn.Parameter(torch.ones(4, dtype=torch.bfloat16))
    small = MasterWeightAdamW([weight], lr=1e-4, weight_decay=0.0)
    for _ in range(100):
        small.zero_grad()
        weight.grad = torch.ones_like(weight)
        small.step()
    assert weight[0].item() < 1.0  # 100 x 1e-4 moved it
    plain_bf16 = torch.nn.Parameter(torch.ones(4, dtype=torch.bfloat16))
    bf16_adamw = torch.optim.AdamW([plain_bf16], lr=1e-4, weight_decay=0.0)
    for _ in range(100):
        bf16_adamw.zero_grad()
        plain_bf16.grad = torch.ones_like(plain_bf16)
        bf16_adamw.step()
    assert plain_bf16[0].item() == 1.0  # pure bf16 AdamW loses every one of those updates


def test_speed_options_are_checked():
    from embedforge.errors import ConfigError
    from embedforge.training.speed import TrainingSpeed

    assert TrainingSpeed.from_dict({"packing": "auto", "compile": True}).compile is True
    with pytest.raises(ConfigError, match="stage.speed.pack: unknown speed option"):
        TrainingSpeed.from_dict({"pack": True}, "stage.speed")
    with pytest.raises(ConfigError, match="speed.compile: expected true or false, got 'auto'"):
        TrainingSpeed.from_dict({"compile": "auto"})
    with pytest.raises(ConfigError, match="speed.packing: expected true, false or 'auto', got 'yes'"):
        TrainingSpeed.from_dict({"packing": "yes"})
    with pytest.raises(ConfigError, match="speed.fast_dropout: expected true, false or 'auto', got 0.1"):
        TrainingSpeed.from_dict({"fast_dropout": 0.1})
