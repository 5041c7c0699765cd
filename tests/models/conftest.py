"""Fixtures for the decoder / MoE / LoRA tests: tiny random decoder LLM folders, built once per session."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_decoder_dir(tmp_path_factory) -> Callable[[str], Path]:
    """``tiny_decoder_dir(arch)``: a plain HF ``*ForCausalLM`` folder of a tiny random decoder (cached)."""
    from embedforge.models.tiny import build_tiny_model

    built: dict[str, Path] = {}

    def build(arch: str) -> Path:
        if arch not in built:
            built[arch] = build_tiny_model(arch, tmp_path_factory.mktemp(f"tiny-{arch}"))
        return built[arch]

    return build
