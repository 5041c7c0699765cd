"""``embedforge export`` and ``serve --backend onnx|openvino``: the exported graph gives what the torch model gives."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
httpx2 = pytest.importorskip("httpx2")

TEXTS = [
    "A man is playing a guitar.",
    "ok",
    "The quick brown fox jumps over the lazy dog near the riverbank on a sunny afternoon, twice.",
    " ".join(["a text longer than the model's 64 tokens is truncated the same way"] * 8),
]


@pytest.fixture(scope="module")
def exported(prompted_model_dir, tmp_path_factory):
    """The tiny prompted model exported three ways."""
    from embedforge.serving.export import export_model

    root = tmp_path_factory.mktemp("exported")
    manifests = {"onnx": export_model(prompted_model_dir, root / "onnx", backend="onnx")}
    manifests["int8"] = export_model(prompted_model_dir, root / "int8", backend="onnx", quantize="int8")
    if _has_openvino():
        manifests["openvino"] = export_model(prompted_model_dir, root / "openvino", backend="openvino")
    return root, manifests


def _has_openvino() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.parametrize("kind", ["onnx", "openvino"])
def test_exported_model_agrees_with_torch(exported, reference_model, kind):
    from embedforge.serving.export import cosine_agreement, load_exported

    if kind == "openvino" and not _has_openvino():
        pytest.skip("openvino not installed")
    root, manifests = exported
    assert manifests[kind]["agreement_with_torch"]["min_cosine"] >= 0.999
    model = load_exported(root / kind, backend=kind)
    assert "Runner" in type(model[0].model).__name__  # the torch weights are gone
    # batch sizes and lengths other than the traced ones (dynamic axes), prompts included
    for batch_size in (1, 3):
        expected = reference_model.encode_query(TEXTS, batch_size=batch_size)
        got = model.encode_query(TEXTS, batch_size=batch_size)
        agreement = cosine_agreement(expected, got)
        assert agreement["min_cosine"] >= 0.999 and agreement["max_abs_diff"] < 1e-4, agreement


def test_int8_export_is_close_and_smaller(exported, reference_model):
    from embedforge.serving.export import cosine_agreement, load_exported

    root, manifests = exported
    assert manifests["int8"]["file"] == "onnx/model_qint8.onnx" and manifests["int8"]["quantize"] == "int8"
    assert (root / "int8/onnx/model_qint8.onnx").stat().st_size < (root / "int8/onnx/model.onnx").stat().st_size
    agreement = cosine_agreement(reference_model.encode(TEXTS), load_exported(root / "int8").encode(TEXTS))
    assert agreement["min_cosine"] > 0.9, agreement  # int8 is stated separately: close, not equal


def test_exported_folder_keeps_the_sentence_transformers_layout(exported):
    root, _ = exported
    folder = root / "onnx"
    for name in ("modules.json", "config_sentence_transformers.json", "onnx/model.onnx", "embedforge_export.json"):
        assert (folder / name).is_file(), name
    assert json.loads((folder / "config_sentence_transformers.json").read_text())["prompts"]["query"] == "query: "
    import onnx

    graph = onnx.load(str(folder / "onnx/model.onnx")).graph
    assert [i.name for i in graph.input] == ["input_ids", "attention_mask", "token_type_ids"]
    assert [o.name for o in graph.output] == ["last_hidden_state"]


def test_serve_with_the_onnx_backend(exported, reference_model):
    from embedforge.serving import ServerThread, create_app

    root, _ = exported
    with ServerThread(create_app(root / "onnx", backend="onnx", model_name="tiny-embed")) as server:
        body = {"model": "tiny-embed-query", "input": TEXTS, "encoding_format": "float"}
        response = httpx2.post(server.url + "/v1/embeddings", json=body, timeout=60)
        assert response.status_code == 200, response.text
        rows = np.array([item["embedding"] for item in response.json()["data"]], dtype=np.float32)
    np.testing.assert_allclose(rows, reference_model.encode_query(TEXTS), atol=1e-4, rtol=0)


def test_export_errors(prompted_model_dir, exported, tmp_path):
    from embedforge.errors import ConfigError
    from embedforge.serving.export import export_model, load_exported

    root, _ = exported
    with pytest.raises(ConfigError, match="exists; choose another folder"):
        export_model(prompted_model_dir, root / "onnx")
    with pytest.raises(ConfigError, match="int8 is for --backend onnx"):
        export_model(prompted_model_dir, tmp_path / "x", backend="openvino", quantize="int8")
    with pytest.raises(ConfigError, match="backend must be one of onnx, openvino"):
        export_model(prompted_model_dir, tmp_path / "x", backend="tensorrt")
    with pytest.raises(ConfigError, match="embedforge export MODEL .* --backend onnx"):
        load_exported(prompted_model_dir, backend="onnx")
    if _has_openvino():
        with pytest.raises(ConfigError, match="was exported for onnx, not openvino"):
            load_exported(root / "int8", backend="openvino")
    assert not list(root.glob(".*export-*"))  # no temporary folder left behind


def test_export_cli(prompted_model_dir, tmp_path, capsys):
    from embedforge.cli import main

    assert main(["export", str(prompted_model_dir), str(tmp_path / "out"), "--backend", "onnx"]) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["agreement_with_torch"]["min_cosine"] >= 0.999
    assert main(["export", str(prompted_model_dir), str(tmp_path / "out")]) == 2
    assert "exists" in capsys.readouterr().err
