"""Shared fixtures: one tiny random model per session (deep-copied per test), real data paths."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
# ../shared/data beside the checkout (CI and the README layout); EMBEDFORGE_SHARED_DATA overrides
SHARED_DATA = Path(os.environ.get("EMBEDFORGE_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (real datasets); tests that need it skip loudly only outside CI."""
    if not SHARED_DATA.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{SHARED_DATA} is missing in CI")
        pytest.skip(f"{SHARED_DATA} not found")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    """A plain Hugging Face folder with a tiny random BERT (2 layers, hidden 32)."""
    from embedforge.models.tiny import build_tiny_model

    return build_tiny_model("bert", tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def _tiny_st_session(tiny_bert_dir):
    from embedforge.models import load_model

    return load_model(tiny_bert_dir, max_seq_length=64)


@pytest.fixture(scope="session")
def tiny_decoder_dir(tmp_path_factory):
    """``tiny_decoder_dir(arch)``: a plain HF ``*ForCausalLM`` folder of a tiny random decoder (cached)."""
    from embedforge.models.tiny import build_tiny_model

    built: dict[str, Path] = {}

    def build(arch: str) -> Path:
        if arch not in built:
            built[arch] = build_tiny_model(arch, tmp_path_factory.mktemp(f"tiny-{arch}"))
        return built[arch]

    return build


@pytest.fixture
def tiny_model(_tiny_st_session):
    """A tiny SentenceTransformer (mean pooling + normalize), a fresh copy per test."""
    return copy.deepcopy(_tiny_st_session)


@pytest.fixture(scope="session")
def tiny_model_dir(_tiny_st_session, tmp_path_factory) -> Path:
    """The tiny SentenceTransformer saved in embedforge's format."""
    from embedforge.models import save_model

    return save_model(_tiny_st_session, tmp_path_factory.mktemp("tiny-st") / "model")


@pytest.fixture(autouse=True)
def _one_thread_for_fast_tests(request):
    """Tiny models run fastest on one thread (two threads spin-wait when the machine is busy); slow tests keep all."""
    import torch

    threads = torch.get_num_threads()
    if request.node.get_closest_marker("slow") is None:
        torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
