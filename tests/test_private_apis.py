"""Guards for the private APIs of our dependencies that embedforge still uses (listed in docs/private-apis.md).

Each test checks the exact shape embedforge relies on, against the versions it was read from. An upgrade that
changes one fails here, by name, instead of somewhere deep in a training run.
"""

from __future__ import annotations

import inspect
import re
from importlib.metadata import version
from pathlib import Path

import pytest

CHECKED = {"sentence-transformers": "6.2.0", "transformers": "5.23.0", "mteb": "2.26.24", "torch": "2.13.0"}
DOC = Path(__file__).resolve().parents[1] / "docs" / "private-apis.md"


def parameters(function) -> list[str]:
    return list(inspect.signature(function).parameters)


def test_the_list_names_the_versions_it_was_checked_against():
    text = DOC.read_text()
    for package, checked in CHECKED.items():
        assert f"{package} {checked}" in text
        if version(package).split("+")[0] != checked:  # torch's CPU wheel is "2.13.0+cpu"
            pytest.fail(
                f"{package} is {version(package)}, docs/private-apis.md was checked against {checked}: re-read every "
                f"entry of that package in the list, then update the versions here and there"
            )


def test_trainer_save_checkpoint():
    """recipes/stages/train.py: a checkpoint at the very end of a stage (the Trainer has no public call for it)."""
    from transformers import Trainer

    assert parameters(Trainer._save_checkpoint) == ["self", "model", "trial"]


def test_mteb_classification_undersample_and_scores():
    """evaluation/types/classification.py: overrides that read the label column once."""
    from mteb.abstasks.classification import AbsTaskClassification

    assert parameters(AbsTaskClassification._undersample_data) == ["self", "dataset", "experiment_num", "idxs"]
    assert parameters(AbsTaskClassification._calculate_scores)[:3] == ["self", "y_test", "y_pred"]


def test_mteb_get_prompt():
    """evaluation/encoder.py: mteb's own prompt resolution (task name / type x query / document)."""
    from mteb.models.abs_encoder import get_prompt

    assert parameters(get_prompt)[:3] == ["model_prompts", "task_metadata", "prompt_type"]


def test_sentence_transformers_mining_report_format():
    """mining/miner.py reads the per-filter counts from the report sentence-transformers prints."""
    from sentence_transformers.util import hard_negatives

    from embedforge.mining.miner import _SKIPPED

    source = inspect.getsource(hard_negatives)
    assert 'f"Skipped {skipped:,} potential negatives ({ratio:.2%}) due to the {param_name} of {param_value}."' in (
        source
    )
    assert _SKIPPED.findall("Skipped 1,234 potential negatives (8.36%) due to the relative_margin of 0.05.") == [
        ("1,234", "relative_margin")
    ]


def test_sentence_transformers_matryoshka_internals():
    """losses/matryoshka.py re-runs MatryoshkaLoss.forward's loop with its ForwardDecorator (teacher labels whole),
    and relies on MatryoshkaLoss decorating a cached loss's calculate_loss."""
    from sentence_transformers.sentence_transformer.losses import MatryoshkaLoss
    from sentence_transformers.sentence_transformer.losses.matryoshka import CachedLossDecorator, ForwardDecorator

    assert parameters(ForwardDecorator.set_dim) == ["self", "dim"] and callable(ForwardDecorator.__call__)
    assert parameters(CachedLossDecorator.__init__)[:4] == ["self", "fn", "matryoshka_dims", "matryoshka_weights"]
    source = inspect.getsource(MatryoshkaLoss.forward)
    assert "labels.size(-1) == self.model.get_embedding_dimension()" in source  # the label truncation we bypass
    assert "loss.calculate_loss = CachedLossDecorator(" in inspect.getsource(MatryoshkaLoss.__init__)


def test_transformers_router_logits_recorder():
    """models/moe.py finds the router modules from transformers' own `router_logits` recorder spec and calls each
    MoE family's module-level load_balancing_loss_func."""
    import sys

    from transformers.models.qwen2_moe import modeling_qwen2_moe
    from transformers.utils.output_capturing import OutputRecorder

    assert "router_logits" in modeling_qwen2_moe.Qwen2MoeModel._can_record_outputs
    assert {"target_class", "index", "layer_name", "class_name"} <= set(inspect.signature(OutputRecorder).parameters)
    loss_func = sys.modules[modeling_qwen2_moe.Qwen2MoeModel.__module__].load_balancing_loss_func
    assert parameters(loss_func)[:4] == ["gate_logits", "num_experts", "top_k", "attention_mask"]


def test_transformers_peft_flag():
    """models/lora.py clears this flag after merging, or save_pretrained would write only the adapter."""
    from transformers import PreTrainedModel

    source = inspect.getsource(PreTrainedModel.save_pretrained)
    assert re.search(r"_hf_peft_config_loaded", source)


def test_trainer_load_from_checkpoint_and_scheduler_last_lr():
    """training/resume.py: a finished run's last checkpoint loaded without training; the restored scheduler's rate."""
    import torch
    from sentence_transformers import SentenceTransformerTrainer

    assert parameters(SentenceTransformerTrainer._load_from_checkpoint) == ["self", "checkpoint_path"]
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    assert scheduler._last_lr == [0.1] and scheduler.base_lrs == [0.1] and len(scheduler.lr_lambdas) == 1


def test_torch_queue_callback_runs_when_the_backward_pass_ends():
    """models/embedding_grad.py: a callback queued from inside a backward runs once, after every node of that pass."""
    import torch

    order = []

    class Probe(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, grad):
            torch.autograd.Variable._execution_engine.queue_callback(lambda: order.append("callback"))
            order.append("node")
            return grad * 2

    x = torch.ones(3, requires_grad=True)
    (Probe.apply(x) * 3).sum().backward()
    assert order == ["node", "callback"] and torch.equal(x.grad, torch.full((3,), 6.0))
