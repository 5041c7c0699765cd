"""Export a SentenceTransformer's transformer to ONNX or OpenVINO, and load such a folder for serving.

Why not sentence-transformers' own ``backend="onnx"`` / ``"openvino"``: it loads (and exports) through
Hugging Face Optimum, and no released Optimum works with the pinned transformers 5.23:
``optimum-onnx`` 0.1.0 (the latest) declares ``transformers<4.58`` and its ``optimum.onnxruntime``
imports ``transformers.utils.is_offline_mode`` and ``transformers.modeling_utils.get_parameter_dtype``,
both gone in transformers 5; ``optimum-intel`` 2.2.0 (the latest) declares ``transformers<5.6`` and
needs ``torchvision``. So the export here uses what does work: ``torch.onnx.export`` (the TorchScript
exporter, ``dynamo=False``: the dynamo exporter needs ``onnxscript``), onnxruntime's
``quantize_dynamic`` for int8, and OpenVINO's own ``convert_model`` on the ONNX file (no Optimum).

The folder keeps sentence-transformers' layout: the whole model as ``SentenceTransformer.save`` writes
it (tokenizer, pooling, prompts, torch weights), plus ``onnx/model.onnx`` (inputs ``input_ids``,
``attention_mask`` and, where the model takes it, ``token_type_ids``; output ``last_hidden_state``, the
names Optimum's feature-extraction export uses), ``onnx/model_qint8.onnx`` with ``--quantize int8``,
``openvino/openvino_model.xml`` for OpenVINO, and ``embedforge_export.json`` (what was exported, with
the agreement measured against the torch model right after export). Where Optimum is compatible, the
same folder loads with ``SentenceTransformer(path, backend="onnx")``; here :func:`load_exported` loads
it: the sentence-transformers model is built as usual and its transformer module's ``model`` is replaced
by a runner over the ONNX Runtime / OpenVINO session, so tokenization, pooling, normalization and
prompts stay sentence-transformers' own.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from embedforge.errors import ConfigError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

BACKENDS = ("onnx", "openvino")
QUANTIZATIONS = ("int8",)
MANIFEST = "embedforge_export.json"
ONNX_FILE = "onnx/model.onnx"
ONNX_INT8_FILE = "onnx/model_qint8.onnx"
OPENVINO_FILE = "openvino/openvino_model.xml"
OPSET = 17
OUTPUT_NAME = "last_hidden_state"
_CHECK_TEXTS = [
    "A man is playing a guitar.",
    "The quick brown fox jumps over the lazy dog near the riverbank on a sunny afternoon.",
    "ok",
    "Embeddings map text to vectors; similar meanings land close together, which retrieval uses.",
    "¿Dónde está la biblioteca? 图书馆在哪里？",
]

_INSTALL = {
    "onnx": "pip install 'embedforge[export]' (onnx, onnxruntime)",
    "openvino": "pip install 'embedforge[export]' (onnx, onnxruntime, openvino)",
}


def _require(backend: str) -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401

        if backend == "openvino":
            import openvino  # noqa: F401
    except ImportError as error:
        raise ImportError(f"the {backend} backend needs {error.name}: {_INSTALL[backend]}") from None


def _transformer(model: SentenceTransformer) -> Any:
    first = model[0]
    modality = getattr(first, "modality_config", {}).get("text", {})
    output = modality.get("method_output_name")
    if (
        type(first).__name__ != "Transformer"
        or modality.get("method") != "forward"
        or output
        not in (
            OUTPUT_NAME,
            (OUTPUT_NAME,),
            [OUTPUT_NAME],
        )
    ):
        raise ConfigError(
            "export handles models whose first module is a sentence-transformers Transformer that reads "
            f"'{OUTPUT_NAME}' from forward(); this one is {type(first).__name__} with {modality or 'no text config'}"
        )
    return first


class _TracedTransformer(torch.nn.Module):
    """The HF model's forward with positional inputs and one output, which is what the ONNX graph holds."""

    def __init__(self, model: torch.nn.Module, input_names: list[str]):
        super().__init__()
        self.model = model
        self.input_names = input_names

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.input_names, inputs, strict=True)), return_dict=True)[OUTPUT_NAME]


def _input_names(model: SentenceTransformer, transformer: Any) -> list[str]:
    import inspect

    accepted = set(inspect.signature(transformer.model.forward).parameters)
    names = [name for name in ("input_ids", "attention_mask", "token_type_ids") if name in accepted]
    produced = set(model.tokenizer.model_input_names)
    return [name for name in names if name in produced or name == "attention_mask"]


def _export_onnx(model: SentenceTransformer, path: Path) -> list[str]:
    transformer = _transformer(model)
    names = _input_names(model, transformer)
    features = model.tokenizer(_CHECK_TEXTS[:2], padding=True, return_tensors="pt")
    inputs = tuple(features[name] for name in names)
    path.parent.mkdir(parents=True, exist_ok=True)
    dynamic = {name: {0: "batch", 1: "sequence"} for name in [*names, OUTPUT_NAME]}
    traced = _TracedTransformer(transformer.model, names).eval()
    with torch.no_grad():
        torch.onnx.export(
            traced,
            inputs,
            str(path),
            input_names=names,
            output_names=[OUTPUT_NAME],
            dynamic_axes=dynamic,
            opset_version=OPSET,
            dynamo=False,
        )
    return names


def _quantize_int8(source: Path, target: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # per-channel weight scales: per-tensor ones cost all-MiniLM-L6-v2 a min cosine of 0.86 vs 0.99 (200 STS texts)
    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True)


def _export_openvino(onnx_path: Path, target: Path) -> None:
    import openvino as ov

    target.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(ov.convert_model(str(onnx_path)), str(target), compress_to_fp16=False)


def cosine_agreement(reference: np.ndarray, other: np.ndarray) -> dict[str, float]:
    """Row-wise cosine between two ``(n, d)`` arrays: ``min`` and ``mean``, and the largest absolute difference."""
    a = reference / np.linalg.norm(reference, axis=1, keepdims=True)
    b = other / np.linalg.norm(other, axis=1, keepdims=True)
    cosines = (a * b).sum(axis=1)
    return {
        "min_cosine": float(cosines.min()),
        "mean_cosine": float(cosines.mean()),
        "max_abs_diff": float(np.abs(reference - other).max()),
    }


def export_model(
    model_or_path: str | os.PathLike[str] | SentenceTransformer,
    output: str | os.PathLike[str],
    *,
    backend: str = "onnx",
    quantize: str | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write ``output``: the model as sentence-transformers saves it plus its ONNX / OpenVINO graph.

    Args:
        model_or_path: a loaded ``SentenceTransformer``, a model folder, or an offline preset name.
        output: the folder to write (written in a temporary folder next to it, then renamed).
        backend: ``onnx`` or ``openvino``.
        quantize: ``int8`` (ONNX only: onnxruntime's dynamic int8 quantization, per-channel weight scales).
        overwrite: replace an existing ``output``.

    Returns:
        The manifest written to ``output/embedforge_export.json`` (files, inputs, versions, and the
        agreement with the torch model on a few texts: ``min_cosine``, ``mean_cosine``, ``max_abs_diff``).

    Raises:
        ConfigError: a bad option, an existing ``output``, or a model this export does not handle.
        ImportError: onnx / onnxruntime / openvino missing (with the pip command).
    """
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise ConfigError(f"quantize must be one of {', '.join(QUANTIZATIONS)} or None, got {quantize!r}")
    if quantize and backend == "openvino":
        raise ConfigError(
            "--quantize int8 is for --backend onnx; OpenVINO's int8 needs NNCF, which is not part of this export"
        )
    output = Path(output)
    if output.exists() and not overwrite:
        raise ConfigError(f"{output} exists; choose another folder or pass overwrite=True (--overwrite)")
    _require(backend)
    if isinstance(model_or_path, str | os.PathLike):
        from embedforge.models import load_model

        model = load_model(model_or_path, device="cpu")
    else:
        model = model_or_path.to("cpu")
    model.eval()
    _transformer(model)

    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.export-", dir=output.parent))
    try:
        model.save(str(tmp))
        names = _export_onnx(model, tmp / ONNX_FILE)
        file = ONNX_FILE
        if quantize == "int8":
            _quantize_int8(tmp / ONNX_FILE, tmp / ONNX_INT8_FILE)
            file = ONNX_INT8_FILE
        if backend == "openvino":
            _export_openvino(tmp / ONNX_FILE, tmp / OPENVINO_FILE)
            file = OPENVINO_FILE
        manifest: dict[str, Any] = {
            "backend": backend,
            "file": file,
            "quantize": quantize,
            "inputs": names,
            "output": OUTPUT_NAME,
            "opset": OPSET,
            "versions": _versions(backend),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        exported = load_exported(tmp, backend=backend)
        reference = model.encode(_CHECK_TEXTS, convert_to_numpy=True, show_progress_bar=False)
        candidate = exported.encode(_CHECK_TEXTS, convert_to_numpy=True, show_progress_bar=False)
        manifest["agreement_with_torch"] = {"texts": len(_CHECK_TEXTS), **cosine_agreement(reference, candidate)}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        _umask_permissions(tmp)
        if output.exists():
            shutil.rmtree(output)
        tmp.rename(output)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("exported %s to %s (%s)", backend, output, manifest["agreement_with_torch"])
    return manifest


def _umask_permissions(folder: Path) -> None:
    # mkdtemp makes the folder 0700; use the user's umask like a plain mkdir (a server may run as another user)
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)


def _versions(backend: str) -> dict[str, str]:
    import onnxruntime

    versions = {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__}
    if backend == "openvino":
        import openvino

        versions["openvino"] = openvino.__version__
    return versions


class _BackendRunner(torch.nn.Module):
    """Stands in for the HF model inside sentence-transformers' Transformer module: runs the exported graph.

    ``forward(input_ids=..., attention_mask=..., ...)`` returns ``{"last_hidden_state": tensor}``, what
    the Transformer module reads from the HF model.
    """

    def __init__(self, run: Any, input_names: list[str], config: Any, description: str):
        super().__init__()
        self._run = run
        self.input_names = input_names
        self.config = config
        self.description = description

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def forward(self, **features: Any) -> dict[str, torch.Tensor]:
        feed = {name: features[name].detach().cpu().numpy().astype(np.int64) for name in self.input_names}
        return {OUTPUT_NAME: torch.from_numpy(np.ascontiguousarray(self._run(feed)))}

    def extra_repr(self) -> str:
        return self.description


def _onnx_runner(file: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(file), options, providers=["CPUExecutionProvider"])
    return lambda feed: session.run([OUTPUT_NAME], feed)[0]


def _openvino_runner(file: Path) -> Any:
    import openvino as ov

    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": torch.get_num_threads()}
    compiled = ov.Core().compile_model(str(file), "CPU", config)
    output = compiled.output(0)
    return lambda feed: compiled(feed)[output]


def load_exported(
    path: str | os.PathLike[str], *, backend: str = "onnx", max_seq_length: int | None = None
) -> SentenceTransformer:
    """Load a folder written by :func:`export_model` and run its transformer with ``backend``.

    Raises:
        ConfigError: the folder has no export for ``backend`` (names the command that makes one).
    """
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of torch, {', '.join(BACKENDS)}, got {backend!r}")
    path = Path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise ConfigError(
            f"{path} has no {MANIFEST}: make the folder with 'embedforge export MODEL {path} --backend {backend}'"
        )
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    file = manifest["file"] if manifest["backend"] == backend else (ONNX_FILE if backend == "onnx" else None)
    if file is None or not (path / file).is_file():
        raise ConfigError(
            f"{path} was exported for {manifest['backend']}, not {backend}: run "
            f"'embedforge export MODEL {path} --backend {backend} --overwrite'"
        )
    _require(backend)
    from embedforge.models import load_model

    model = load_model(path, device="cpu", max_seq_length=max_seq_length)
    transformer = _transformer(model)
    run = _onnx_runner(path / file) if backend == "onnx" else _openvino_runner(path / file)
    transformer.model = _BackendRunner(
        run, list(manifest["inputs"]), transformer.model.config, f"{backend}: {file}"
    )  # the torch weights are dropped here
    model.eval()
    return model
