"""Fixtures for the synth tests: a tiny chat LLM, a bag-of-words embedder, a stub OpenAI-compatible server."""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import threading
import time
import zlib
from collections import Counter
from pathlib import Path

import pytest
import torch

from embedforge.synth import Completion

# a minimal ChatML-style template (the tiny model's MiniLM tokenizer has none)
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|> {{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)

DOCUMENTS = [
    {"_id": "cats", "text": "Cats are small domestic felines that purr, hunt mice and sleep most of the day."},
    {"_id": "python", "text": "Python is a programming language with dynamic typing, used for scripting and data."},
    {"_id": "volcano", "text": "A volcano erupts when magma, gas and ash escape from a vent in the earth's crust."},
    {"_id": "bread", "text": "Sourdough bread is leavened by wild yeast and lactic bacteria in a flour starter."},
    {"_id": "tides", "text": "Ocean tides rise and fall because of the gravity of the moon and the sun."},
    {"_id": "chess", "text": "Chess is a board game where two players move kings, queens, rooks and pawns."},
]


@pytest.fixture(scope="session")
def tiny_chat_llm(tiny_decoder_dir, tmp_path_factory) -> Path:
    """The tiny random Llama of the test suite with a chat template on its tokenizer."""
    from transformers import AutoTokenizer

    folder = tmp_path_factory.mktemp("tiny-chat-llama")
    shutil.copytree(tiny_decoder_dir("llama"), folder, dirs_exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def corpus_file(tmp_path) -> Path:
    import json

    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in DOCUMENTS))
    return path


class BagOfWords:
    """A stand-in embedding model: hashed word counts, L2-normalized (relevance = shared words)."""

    def __init__(self, dim: int = 512):
        self.dim = dim

    def encode(self, texts, prompt=None, batch_size=32, convert_to_tensor=True, normalize_embeddings=True, **_):
        out = torch.zeros(len(texts), self.dim)
        for i, text in enumerate(texts):
            for word in re.findall(r"[a-z]+", ((prompt or "") + text).lower()):
                if len(word) > 3:  # content words only
                    out[i, zlib.crc32(word.encode()) % self.dim] += 1
        return torch.nn.functional.normalize(out, dim=-1)


class ScriptedGenerator:
    """A generator whose reply to a prompt is ``reply(prompt)``; it records every prompt."""

    name = "scripted"

    def __init__(self, reply, fail_after: int | None = None):
        self.reply = reply
        self.prompts: list[str] = []
        self.stats: Counter = Counter()
        self.fail_after = fail_after

    def generate(self, prompts, *, seed, temperature=None):
        if self.fail_after is not None and len(self.prompts) >= self.fail_after:
            raise KeyboardInterrupt("killed")
        self.prompts.extend(prompts)
        self.stats["requests"] += len(prompts)
        return [Completion(self.reply(p)) for p in prompts]


def first_words(prompt: str, count: int = 6) -> str:
    """The first words of the document inside a rendered query template."""
    document = next(d["text"] for d in DOCUMENTS if d["text"] in prompt)
    return " ".join(document.split()[:count])


class StubServer:
    """An OpenAI-compatible /v1/chat/completions server on a free loopback port (uvicorn in a thread).

    ``fail`` is a list of HTTP statuses returned, in order, before the replies succeed.
    """

    def __init__(self, reply, fail: list[int] | None = None):
        from fastapi import FastAPI
        from fastapi.responses import JSONResponse

        self.requests: list[dict] = []
        self.fail = list(fail or [])
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def chat(body: dict):
            self.requests.append(body)
            if self.fail:
                status = self.fail.pop(0)
                return JSONResponse({"error": {"message": f"stub failure {status}"}}, status_code=status)
            content = reply(body["messages"][-1]["content"])
            return {
                "id": f"stub-{len(self.requests)}",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }

        import uvicorn

        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}/v1"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="error", lifespan="off"))
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve(sockets=[self.socket])))

    def __enter__(self) -> StubServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the stub server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.socket.close()
