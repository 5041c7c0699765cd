"""Request schema and OpenAI-style errors for the embeddings server.

The request body follows OpenAI's ``POST /v1/embeddings`` (``input``, ``model``, ``dimensions``,
``encoding_format``, ``user``) plus two embedforge extras: ``input_type`` (``query`` / ``document``:
apply the model's saved prompt, like ``SentenceTransformer.encode_query`` / ``encode_document``) and
``quantization`` (``int8`` / ``uint8`` / ``binary`` / ``ubinary``).

Every error answers with OpenAI's body shape::

    {"error": {"message": "...", "type": "invalid_request_error", "param": "dimensions", "code": "invalid_value"}}
"""

from __future__ import annotations

import json
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

InputType = Literal["query", "document"]
EncodingFormat = Literal["float", "base64"]
Quantization = Literal["float32", "int8", "uint8", "binary", "ubinary"]
INPUT_TYPES: tuple[str, ...] = get_args(InputType)
ENCODING_FORMATS: tuple[str, ...] = get_args(EncodingFormat)
QUANTIZATIONS: tuple[str, ...] = get_args(Quantization)


class APIError(Exception):
    """An error answered to the client as an OpenAI-style error body.

    Args:
        status: HTTP status (4xx for anything the client can fix).
        message: what is wrong and how to fix it.
        param: the request field at fault (``"input[3]"``, ``"dimensions"``), if any.
        code: a short machine-readable code (``"model_not_found"``, ``"context_length_exceeded"``, ...).
        type: OpenAI's error type (``invalid_request_error`` for 4xx, ``server_error`` for 5xx).
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        type: str | None = None,  # noqa: A002 - OpenAI's field name
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.type = type or ("invalid_request_error" if status < 500 else "server_error")

    def body(self) -> dict[str, Any]:
        """The JSON body: ``{"error": {"message", "type", "param", "code"}}``."""
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class EmbeddingRequest(BaseModel):
    """Body of ``POST /v1/embeddings``.

    ``input`` is validated by hand (:func:`normalize_input`) so that its errors name the offending
    index; the other fields are strict (``"dimensions": "64"`` or ``true`` is an error, not 64 or 1).
    Unknown fields are rejected, so a typo such as ``"dimension"`` does not silently do nothing.
    """

    model_config = ConfigDict(extra="forbid")

    input: Any = Field(description="A string or a list of strings (token arrays are not supported).")
    model: StrictStr = Field(description="The served model name (see GET /v1/models).")
    dimensions: StrictInt | None = Field(None, description="Matryoshka: keep the first N dims, then L2-renormalize.")
    encoding_format: EncodingFormat | None = Field(
        None, description="float (default): JSON numbers; base64: little-endian bytes (float32, or quantized bytes)."
    )
    user: StrictStr | None = Field(None, description="Accepted for OpenAI compatibility; unused.")
    input_type: InputType | None = Field(
        None, description="Apply the model's saved 'query' / 'document' prompt (embedforge extension)."
    )
    quantization: Quantization | None = Field(
        None, description="Quantized output (embedforge extension); see embedforge.serving.output."
    )


def parse_request(raw: bytes) -> EmbeddingRequest:
    """Decode and validate a request body, raising :class:`APIError` (400) on any problem."""
    try:
        payload = json.loads(raw)
    except UnicodeDecodeError:
        raise APIError(400, "The request body is not valid UTF-8.", code="invalid_json") from None
    except json.JSONDecodeError as error:
        raise APIError(
            400,
            f"The request body is not valid JSON ({error.msg} at line {error.lineno} column {error.colno}).",
            code="invalid_json",
        ) from None
    except RecursionError:
        raise APIError(400, "The request body nests JSON too deeply.", code="invalid_json") from None
    if not isinstance(payload, dict):
        raise APIError(
            400,
            f"The request body must be a JSON object, got {type(payload).__name__}.",
            code="invalid_type",
        )
    try:
        return EmbeddingRequest.model_validate(payload)
    except ValidationError as error:
        raise validation_to_api_error(error) from None


def validation_to_api_error(error: ValidationError) -> APIError:
    """Turn pydantic's first error into a 400 naming the field (``param``) and what was expected."""
    first = error.errors(include_url=False)[0]
    param = format_loc(first.get("loc", ()))
    kind = first.get("type", "")
    if kind == "missing":
        return APIError(400, f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter")
    if kind == "extra_forbidden":
        return APIError(
            400,
            f"Unrecognized request argument supplied: '{param}'. Valid arguments: "
            f"{', '.join(EmbeddingRequest.model_fields)}.",
            param=param,
            code="unknown_parameter",
        )
    value = first.get("input")
    shown = json.dumps(value)[:80] if _is_json(value) else repr(value)[:80]
    return APIError(
        400,
        f"Invalid value for '{param}': {first.get('msg', 'invalid')} (got {shown}).",
        param=param,
        code="invalid_value",
    )


def format_loc(loc: tuple[Any, ...] | list[Any]) -> str:
    """``("input", 3)`` -> ``"input[3]"``; ``("a", "b")`` -> ``"a.b"``."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def normalize_input(value: Any, *, max_inputs: int) -> list[str]:
    """Check ``input`` and return it as a list of strings.

    Raises:
        APIError: 400 for a wrong type, token arrays, an empty string or list, or more than
            ``max_inputs`` items; the ``param`` names the offending index.
    """
    if isinstance(value, str):
        items = [value]
        single = True
    elif isinstance(value, list):
        items = value
        single = False
    else:
        raise APIError(
            400,
            f"'input' must be a string or a list of strings, got {_json_type(value)}.",
            param="input",
            code="invalid_type",
        )
    if not items:
        raise APIError(400, "'input' must not be an empty list.", param="input", code="empty_input")
    if len(items) > max_inputs:
        raise APIError(
            400,
            f"'input' has {len(items)} items; this server accepts at most {max_inputs} per request. "
            "Split the request.",
            param="input",
            code="too_many_inputs",
        )
    for index, item in enumerate(items):
        param = "input" if single else f"input[{index}]"
        if isinstance(item, str):
            if not item.isascii() and not _is_utf8_encodable(item):
                raise APIError(
                    400,
                    f"'{param}' contains an unpaired UTF-16 surrogate (a lone \\ud800 escape); send valid Unicode.",
                    param=param,
                    code="invalid_value",
                )
            if not item:
                raise APIError(
                    400,
                    f"'{param}' is an empty string; every input must be non-empty.",
                    param=param,
                    code="empty_input",
                )
            continue
        if isinstance(item, int | list) and not isinstance(item, bool):
            raise APIError(
                400,
                f"'{param}' is {_json_type(item)}: token-id inputs are not supported by this server; send text. "
                "LangChain's OpenAIEmbeddings sends token ids by default: construct it with "
                "check_embedding_ctx_length=False.",
                param=param,
                code="token_ids_not_supported",
            )
        raise APIError(400, f"'{param}' must be a string, got {_json_type(item)}.", param=param, code="invalid_type")
    return items


def _is_utf8_encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _json_type(value: Any) -> str:
    names = {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "an object",
        type(None): "null",
    }
    return names.get(type(value), type(value).__name__)
