"""Two CPU processes (gloo) with gather_across_devices=True reproduce the single-process loss and gradients.

Each rank embeds half of a global batch through a shared linear map ``W`` (the "model"), computes the loss
with the other rank's embeddings gathered in, and back-propagates; averaging the ranks' ``W.grad`` is what
DDP does. The result must equal one process computing the loss on the whole batch.
"""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from embedforge.losses import InfoNCELoss

WORLD, BATCH, IN_DIM, DIM, NEGATIVES = 2, 8, 6, 5, 3

CONFIGS = {
    "plain": {},
    "all_deterministic_options": {
        "gamma": 0.5,
        "symmetric": True,
        "false_negative_margin": 0.05,
        "mix_pairwise": True,
        "mix_listwise": True,
    },
    "in_batch_off": {"in_batch_negatives": False, "gamma": 0.5, "mix_listwise": True},
    # same-class masking: each rank's class labels are gathered with its embeddings
    "class_labels": {"gamma": 0.5, "symmetric": True, "mix_listwise": True, "labels": True},
}
# class ids per row (anchor, then each hard negative): rows of one class sit on both ranks
CLASSES = torch.tensor([[i % 3, (i + 1) % 3, (i + 2) % 3, -1] for i in range(BATCH)])


def fixed_sampler(valid, count, seed, alpha, beta):
    """Deterministic pair-wise recipes (the random ones are drawn per rank, so they cannot match)."""
    rows = valid.size(0)
    j = torch.zeros(rows, count, dtype=torch.long)
    k = torch.full((rows, count), 2, dtype=torch.long)
    return j, k, torch.full((rows, count), 0.3)


def problem():
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(IN_DIM, DIM, generator=generator, dtype=torch.float64)
    inputs = [torch.randn(BATCH, IN_DIM, generator=generator, dtype=torch.float64) for _ in range(2 + NEGATIVES)]
    return weight, inputs


def loss_and_grad(config: dict, rows: slice, gather: bool):
    weight, inputs = problem()
    weight.requires_grad_()
    options = {k: v for k, v in config.items() if k != "labels"}
    loss_fn = InfoNCELoss(None, temperature=0.1, gather_across_devices=gather, **options)
    loss_fn.pairwise_sampler = fixed_sampler
    labels = CLASSES[rows] if config.get("labels") else None
    loss = loss_fn.compute_loss_from_embeddings([x[rows] @ weight for x in inputs], labels)
    loss.backward()
    return loss.detach(), weight.grad


def _worker(rank: int, port: int, out_path: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        half = BATCH // WORLD
        results = {}
        for name, config in CONFIGS.items():
            loss, grad = loss_and_grad(config, slice(rank * half, (rank + 1) * half), gather=True)
            dist.all_reduce(loss)
            dist.all_reduce(grad)  # DDP: average the ranks' gradients
            results[name] = (loss / WORLD, grad / WORLD)
        if rank == 0:
            torch.save(results, out_path)
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(120)
def test_two_gloo_ranks_equal_one_process(tmp_path):
    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    out = tmp_path / "ranks.pt"
    # fork: the children inherit the imported modules (spawn would re-import sentence-transformers, ~10 s each)
    mp.start_processes(_worker, args=(free_port(), str(out)), nprocs=WORLD, start_method="fork")
    results = torch.load(out)
    for name, config in CONFIGS.items():
        loss, grad = loss_and_grad(config, slice(None), gather=False)
        torch.testing.assert_close(results[name][0], loss, rtol=1e-10, atol=1e-12, msg=name)
        torch.testing.assert_close(results[name][1], grad, rtol=1e-10, atol=1e-12, msg=name)


def test_gathering_matters_for_in_batch_negatives():
    """Without the gather, the per-half losses see fewer negatives: the test above would catch a no-op gather."""
    full, _ = loss_and_grad({}, slice(None), gather=False)
    halves = [loss_and_grad({}, slice(i * BATCH // 2, (i + 1) * BATCH // 2), gather=False)[0] for i in range(2)]
    assert abs((halves[0] + halves[1]).item() / 2 - full.item()) > 1e-3
