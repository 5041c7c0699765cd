"""Quantized output equals sentence-transformers' ``quantize_embeddings`` with the documented fixed ranges."""

from __future__ import annotations

import base64
import math

import numpy as np
import pytest
from sentence_transformers.util import quantize_embeddings

from embedforge.serving.output import Int8Ranges, apply_output_options, encode_rows, truncate_and_renormalize

httpx2 = pytest.importorskip("httpx2")

TEXTS = ["int8 keeps a byte per dimension", "binary keeps a bit", "the quick brown fox", "jumps over the lazy dog"]
DTYPES = {"int8": np.int8, "uint8": np.uint8, "binary": np.int8, "ubinary": np.uint8}


def _post(url, **body):
    response = httpx2.post(url + "/v1/embeddings", json={"model": "tiny-embed", "input": TEXTS, **body}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def _default_ranges(dim: int) -> np.ndarray:
    s = min(1.0, 4 / math.sqrt(dim))
    return np.array([[-s] * dim, [s] * dim], dtype=np.float32)


@pytest.mark.parametrize("precision", ["int8", "uint8", "binary", "ubinary"])
@pytest.mark.parametrize("dims", [None, 12])
def test_quantized_float_format_matches_quantize_embeddings(server, reference_model, precision, dims):
    body = {"quantization": precision, "encoding_format": "float", **({"dimensions": dims} if dims else {})}
    rows = np.array([item["embedding"] for item in _post(server.url, **body)["data"]])
    reference = reference_model.encode(TEXTS)
    if dims:
        reference = truncate_and_renormalize(reference, dims)
    dim = reference.shape[1]
    ranges = _default_ranges(dim) if precision.endswith("int8") else None
    expected = quantize_embeddings(reference, precision=precision, ranges=ranges)
    assert rows.shape == ((len(TEXTS), dim) if precision.endswith("int8") else (len(TEXTS), math.ceil(dim / 8)))
    np.testing.assert_array_equal(rows, expected)
    assert len(np.unique(rows)) > 2  # the output is not degenerate


@pytest.mark.parametrize("precision", ["int8", "ubinary"])
def test_quantized_base64_is_the_raw_bytes(server, reference_model, precision):
    data = _post(server.url, quantization=precision, encoding_format="base64")["data"]
    rows = np.stack([np.frombuffer(base64.b64decode(item["embedding"]), dtype=DTYPES[precision]) for item in data])
    reference = reference_model.encode(TEXTS)
    ranges = _default_ranges(reference.shape[1]) if precision == "int8" else None
    np.testing.assert_array_equal(rows, quantize_embeddings(reference, precision=precision, ranges=ranges))


def test_float32_quantization_is_plain_float(server, reference_model):
    data = _post(server.url, quantization="float32", encoding_format="float")["data"]
    np.testing.assert_allclose([item["embedding"] for item in data], reference_model.encode(TEXTS), atol=1e-5)


def test_int8_is_reproducible_regardless_of_batch(server):
    alone = _post(server.url, quantization="int8", encoding_format="float")["data"][0]["embedding"]
    response = httpx2.post(
        server.url + "/v1/embeddings",
        json={"model": "tiny-embed", "input": [TEXTS[0]], "quantization": "int8"},
        timeout=60,
    )
    assert response.json()["data"][0]["embedding"] == alone


def test_calibrated_int8_ranges_come_from_calibration_texts(prompted_model_dir, reference_model):
    from embedforge.serving import ServerThread, create_app

    calibration = [f"calibration sentence number {i} about topic {i % 7}" for i in range(50)]
    app = create_app(prompted_model_dir, device="cpu", int8_calibration=calibration)
    with ServerThread(app) as server:
        full = _post(server.url, quantization="int8", encoding_format="float")["data"]
        small = _post(server.url, quantization="uint8", encoding_format="float", dimensions=10)["data"]
        card = httpx2.get(server.url + "/v1/models").json()["data"][0]
    calib = reference_model.encode(calibration)
    reference = reference_model.encode(TEXTS)
    np.testing.assert_array_equal(
        [item["embedding"] for item in full],
        quantize_embeddings(reference, precision="int8", calibration_embeddings=calib),
    )
    np.testing.assert_array_equal(
        [item["embedding"] for item in small],
        quantize_embeddings(
            truncate_and_renormalize(reference, 10),
            precision="uint8",
            calibration_embeddings=truncate_and_renormalize(calib, 10),
        ),
    )
    assert "calibrated" in card["int8_ranges"]


def test_truncate_and_renormalize_by_hand():
    rows = np.array([[3.0, 4.0, 12.0], [0.0, 0.0, 1.0]], dtype=np.float32)
    out = truncate_and_renormalize(rows, 2)
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]])  # a zero prefix stays zero instead of NaN


def test_encode_rows_base64_is_little_endian_float32():
    rows = np.array([[1.0, -2.5]], dtype=np.float32)
    (encoded,) = encode_rows(rows, "base64")
    assert base64.b64decode(encoded) == b"\x00\x00\x80\x3f\x00\x00\x20\xc0"
    assert encode_rows(rows, "float") == [[1.0, -2.5]]


def test_int8_scale_option_and_validation():
    rows = np.array([[0.05, -0.05, 0.2]], dtype=np.float32)
    out = apply_output_options(rows, dimensions=None, quantization="uint8", int8_ranges=Int8Ranges(scale=0.1))
    np.testing.assert_array_equal(out, quantize_embeddings(rows, "uint8", ranges=np.array([[-0.1] * 3, [0.1] * 3])))
    assert out[0, 2] == 255  # clipped at the top of the fixed range
    with pytest.raises(ValueError, match="scale"):
        Int8Ranges(scale=0)
    with pytest.raises(ValueError, match="calibration"):
        Int8Ranges(calibration=np.zeros((1, 3)))
