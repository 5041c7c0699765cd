"""Merged input-embedding gradient: the gradients of ``nn.Embedding``, built once per backward pass."""

from __future__ import annotations

import copy

import pytest
import torch

COLUMNS = [
    ["how do cats sleep", "capital of france", "x"],
    ["cats nap all day long in the sun", "paris is the capital of france", "y z"],
    ["dogs bark", "lyon is a city in the south east", "sushi"],
]


def _model(arch, tiny_bert_dir, tiny_decoder_dir):
    from embedforge.models import load_model

    model = load_model(tiny_bert_dir if arch == "bert" else tiny_decoder_dir(arch), max_seq_length=64)
    model.eval()  # no dropout: both passes see the same network
    return model


def _step_grads(model, micro_batches: int = 1) -> dict[str, torch.Tensor]:
    """Grads of a three-column loss (one forward per column, as a contrastive loss runs), over micro-batches."""
    model.zero_grad(set_to_none=True)
    for micro in range(micro_batches):
        embeddings = [model(dict(model.preprocess(texts)))["sentence_embedding"] for texts in COLUMNS]
        loss = sum((e * torch.linspace(-1.0, 1.0 + micro, e.numel()).reshape(e.shape)).sum() for e in embeddings)
        loss.backward()
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("arch", ["bert", "qwen2", "qwen2_moe"])
@pytest.mark.parametrize("micro_batches", [1, 2])
def test_merged_gradient_equals_nn_embedding(arch, micro_batches, tiny_bert_dir, tiny_decoder_dir):
    from embedforge.models.embedding_grad import MergedGradEmbedding, enable_merged_embedding_grad

    model = _model(arch, tiny_bert_dir, tiny_decoder_dir)
    merged = copy.deepcopy(model)
    reference = _step_grads(model, micro_batches)
    embedding = enable_merged_embedding_grad(merged)
    assert isinstance(embedding, MergedGradEmbedding)
    seen = []
    hook = embedding.register_forward_hook(lambda module, args, out: seen.append(type(module).__name__))
    grads = _step_grads(merged, micro_batches)
    hook.remove()
    assert seen == ["MergedGradEmbedding"] * 3 * micro_batches  # every column went through it
    name = next(n for n, p in merged.named_parameters() if p is embedding.weight)
    assert grads.keys() == reference.keys() and name in grads
    assert reference[name].abs().sum() > 0
    for key, grad in grads.items():
        assert torch.allclose(grad, reference[key], atol=1e-6, rtol=1e-5), key
    if embedding.padding_idx is not None:
        assert torch.count_nonzero(grads[name][embedding.padding_idx]) == 0  # padded positions add nothing


def test_no_grad_forward_is_the_plain_lookup_and_disable_restores_nn_embedding(tiny_bert_dir, tiny_decoder_dir):
    from embedforge.models.embedding_grad import disable_merged_embedding_grad, enable_merged_embedding_grad

    model = _model("bert", tiny_bert_dir, tiny_decoder_dir)
    reference = model.encode(COLUMNS[0], convert_to_tensor=True)
    embedding = enable_merged_embedding_grad(model)
    assert torch.equal(model.encode(COLUMNS[0], convert_to_tensor=True), reference)
    out = embedding(torch.tensor([[3, 4]]))
    assert out.grad_fn is not None and "Lookup" in type(out.grad_fn).__name__
    disable_merged_embedding_grad(embedding)
    assert type(embedding) is torch.nn.Embedding
    assert "Embedding" in type(embedding(torch.tensor([[3, 4]])).grad_fn).__name__


def test_unsupported_embeddings_are_left_alone(tiny_bert_dir, tiny_decoder_dir):
    from embedforge.models.embedding_grad import enable_merged_embedding_grad

    frozen = _model("bert", tiny_bert_dir, tiny_decoder_dir)
    frozen[0].auto_model.get_input_embeddings().weight.requires_grad_(False)  # e.g. LoRA freezes it
    assert enable_merged_embedding_grad(frozen) is None
    clipped = _model("bert", tiny_bert_dir, tiny_decoder_dir)
    clipped[0].auto_model.get_input_embeddings().max_norm = 1.0
    assert enable_merged_embedding_grad(clipped) is None
    assert type(clipped[0].auto_model.get_input_embeddings()) is torch.nn.Embedding


def test_speed_option_resolves_per_device_and_process_count():
    from embedforge.errors import ConfigError
    from embedforge.training.speed import TrainingSpeed, resolve_merged_embedding_grad

    auto = TrainingSpeed()
    assert resolve_merged_embedding_grad(auto, 1) is (not torch.cuda.is_available())
    assert resolve_merged_embedding_grad(auto, 2) is False  # DDP reads AccumulateGrad hooks
    assert resolve_merged_embedding_grad(TrainingSpeed(merged_embedding_grad=False), 1) is False
    with pytest.raises(ConfigError, match="speed.merged_embedding_grad: not with several processes"):
        resolve_merged_embedding_grad(TrainingSpeed(merged_embedding_grad=True), 2)
    with pytest.raises(ConfigError, match="speed.merged_embedding_grad: expected true, false or 'auto'"):
        TrainingSpeed.from_dict({"merged_embedding_grad": "yes"})


def test_padding_rows_get_no_gradient_and_repeated_ids_add_up(monkeypatch):
    from embedforge.models import packed_attention
    from embedforge.models.embedding_grad import disable_merged_embedding_grad, enable_merged_embedding_grad

    torch.manual_seed(0)
    plain = torch.nn.Embedding(10, 4, padding_idx=0)
    merged = copy.deepcopy(plain)
    holder = torch.nn.Module()
    holder.get_input_embeddings = lambda: merged  # a transformers-style model exposing its input embedding
    monkeypatch.setattr(packed_attention, "hf_model", lambda model: model)
    assert enable_merged_embedding_grad(holder) is merged
    ids = [torch.tensor([[0, 3, 3, 5]]), torch.tensor([[5, 0, 9]])]
    upstream = [torch.randn(1, 4, 4), torch.randn(1, 3, 4)]  # non-zero gradients at the padding positions too
    for module in (plain, merged):
        sum((module(i) * g).sum() for i, g in zip(ids, upstream, strict=True)).backward()
    assert torch.count_nonzero(merged.weight.grad[0]) == 0
    assert torch.allclose(merged.weight.grad, plain.weight.grad, atol=1e-6)
    disable_merged_embedding_grad(merged)


def test_gradcache_chunked_backward_passes_merge_into_the_same_gradient(tiny_bert_dir, tiny_decoder_dir):
    """CachedInfoNCE runs one backward pass per mini-batch inside its forward, then the outer one."""
    from embedforge.losses import CachedInfoNCELoss
    from embedforge.models.embedding_grad import enable_merged_embedding_grad

    model = _model("bert", tiny_bert_dir, tiny_decoder_dir)
    merged = copy.deepcopy(model)
    enable_merged_embedding_grad(merged)
    grads = []
    for net in (model, merged):
        features = [dict(net.preprocess(texts)) for texts in COLUMNS]
        net.zero_grad(set_to_none=True)
        CachedInfoNCELoss(net, mini_batch_size=2)(features, None).backward()
        grads.append({n: p.grad.detach().clone() for n, p in net.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name, grad in grads[0].items():
        assert torch.allclose(grads[1][name], grad, atol=1e-6, rtol=1e-5), name
