"""Generators: chat LLMs that write queries and judge relevance, behind one small registry.

Two kinds, chosen by the generator spec:

* ``hf`` (a spec without a prefix, or ``hf:<model>``): a local Hugging Face causal LM (an offline preset such as
  ``SmolLM2-135M-Instruct``, or a model folder) through transformers: prompts go through the tokenizer's chat
  template, are left-padded and generated in batches, with seeded sampling (``torch.manual_seed`` per batch).
* ``openai`` (``openai:<model>``): any OpenAI-compatible chat endpoint (vLLM, TGI, llama.cpp server, a hosted API)
  through the ``openai`` client, ``base_url`` pointing at it. Requests run on a bounded thread pool
  (``concurrency``); a retryable failure (connection error, timeout, 408/409/429, 5xx) is retried with exponential
  backoff and jitter up to ``max_retries`` times; every attempt counts against ``request_budget``. A request that
  finally fails comes back as a :class:`Completion` with its ``error`` (the document is then left unfinished, and a
  resumed run tries it again); errors are counted by kind in :attr:`Generator.stats`.

Add a kind with :func:`register_generator` (:class:`~embedforge.utils.registry.Registry`).
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from embedforge.errors import ConfigError
from embedforge.utils.registry import Registry

logger = logging.getLogger(__name__)


@dataclass
class GeneratorConfig:
    """Which LLM writes (and judges), and how it samples; one object for every generator kind."""

    spec: str = "SmolLM2-135M-Instruct"  # preset / folder (hf), or openai:<model> for an OpenAI-compatible endpoint
    max_new_tokens: int = 48  # tokens per reply (a query is short)
    temperature: float = 0.8  # sampling temperature; 0 = greedy
    top_p: float = 0.95  # nucleus sampling
    system_prompt: str | None = None  # a system message before every prompt (None: the chat template's default)
    # hf
    batch_size: int = 16  # prompts per generate() call
    dtype: str | None = None  # float32 (None) | bfloat16 | float16
    device: str | None = None  # None: cuda if available, else cpu
    # openai
    base_url: str | None = None  # e.g. http://127.0.0.1:8000/v1 (None: the client's default / OPENAI_BASE_URL)
    api_key_env: str = "OPENAI_API_KEY"  # environment variable holding the key ("EMPTY" when unset)
    concurrency: int = 8  # requests in flight
    max_retries: int = 4  # retries of a retryable failure per request
    retry_backoff: float = 1.0  # first retry waits this many seconds (doubling, with jitter, at most 30 s)
    request_budget: int | None = None  # at most this many HTTP attempts in this run (None: unbounded)
    timeout: float = 120.0  # seconds per request

    def __post_init__(self) -> None:
        checks = {
            "max_new_tokens": self.max_new_tokens >= 1,
            "temperature": self.temperature >= 0,
            "top_p": 0 < self.top_p <= 1,
            "batch_size": self.batch_size >= 1,
            "concurrency": self.concurrency >= 1,
            "max_retries": self.max_retries >= 0,
            "retry_backoff": self.retry_backoff >= 0,
            "request_budget": self.request_budget is None or self.request_budget >= 1,
        }
        for name, ok in checks.items():
            if not ok:
                raise ConfigError(f"generator.{name}: out of range, got {getattr(self, name)!r}")


@dataclass
class Completion:
    """One reply: its text, or the error that kept it from coming."""

    text: str | None
    error: str | None = None


class Generator(Protocol):
    """What the pipeline needs from an LLM."""

    name: str  # recorded in every output row's provenance
    stats: Counter  # requests, retries, errors by kind

    def generate(self, prompts: Sequence[str], *, seed: int, temperature: float | None = None) -> list[Completion]:
        """One reply per prompt (a user message); ``temperature`` overrides the config's (0: greedy)."""
        ...


class BudgetExhausted(RuntimeError):
    """The generator's request budget is spent."""


# ----------------------------------------------------------------------------------------------------- hf
class HFGenerator:
    """A local causal LM through transformers (chat template, left padding, batched, seeded sampling)."""

    def __init__(self, model: str, config: GeneratorConfig):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from embedforge.models.presets import resolve_model_path

        path = resolve_model_path(model)
        self.name = f"hf:{model}"
        self.config = config
        self.stats: Counter = Counter()
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        if not self.tokenizer.chat_template:
            raise ConfigError(
                f"generator {model!r}: its tokenizer has no chat template; use an instruction-tuned model "
                "(e.g. SmolLM2-135M-Instruct) or set tokenizer.chat_template in its tokenizer_config.json"
            )
        self.tokenizer.padding_side = "left"  # generation continues from the last position of every row
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        dtype = getattr(torch, config.dtype) if config.dtype else torch.float32
        self.device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype, local_files_only=True)
        self.model.to(self.device).eval()

    def render(self, prompt: str) -> str:
        """The chat-templated text the model sees for one user message."""
        messages = [{"role": "user", "content": prompt}]
        if self.config.system_prompt:
            messages.insert(0, {"role": "system", "content": self.config.system_prompt})
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def generate(self, prompts: Sequence[str], *, seed: int, temperature: float | None = None) -> list[Completion]:
        import torch

        temperature = self.config.temperature if temperature is None else temperature
        out: list[Completion] = []
        for start in range(0, len(prompts), self.config.batch_size):
            texts = [self.render(p) for p in prompts[start : start + self.config.batch_size]]
            # the chat template already holds the special tokens (BOS, <|im_start|>, ...)
            batch = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
            batch = batch.to(self.device)
            torch.manual_seed(seed + start)
            sampling = {"do_sample": True, "temperature": temperature, "top_p": self.config.top_p}
            with torch.inference_mode():
                generated = self.model.generate(
                    input_ids=batch["input_ids"],  # not token_type_ids, which BERT-style tokenizers add
                    attention_mask=batch["attention_mask"],
                    max_new_tokens=self.config.max_new_tokens,
                    pad_token_id=self.tokenizer.pad_token_id,
                    **(sampling if temperature > 0 else {"do_sample": False}),
                )
            new_tokens = generated[:, batch["input_ids"].shape[1] :]  # (batch, new tokens): the replies only
            replies = self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
            out.extend(Completion(reply) for reply in replies)
            self.stats["requests"] += len(texts)
        return out


# ------------------------------------------------------------------------------------------------- openai
class OpenAIGenerator:
    """An OpenAI-compatible chat endpoint (bounded concurrency, retries with backoff, a request budget)."""

    def __init__(self, model: str, config: GeneratorConfig):
        try:
            import openai
        except ImportError as error:  # pragma: no cover - openai is a dependency
            raise ImportError("the openai generator needs the openai client: pip install 'openai>=1.30'") from error
        self.openai = openai
        self.model = model
        self.config = config
        self.name = f"openai:{model}" + (f"@{config.base_url}" if config.base_url else "")
        self.client = openai.OpenAI(
            base_url=config.base_url,
            api_key=os.environ.get(config.api_key_env) or "EMPTY",
            max_retries=0,  # retries are ours: counted against the budget and reported
            timeout=config.timeout,
        )
        self.stats: Counter = Counter()
        self._lock = threading.Lock()
        self._attempts = 0
        self.last_error: str | None = None

    def generate(self, prompts: Sequence[str], *, seed: int, temperature: float | None = None) -> list[Completion]:
        temperature = self.config.temperature if temperature is None else temperature
        with ThreadPoolExecutor(max_workers=self.config.concurrency) as pool:
            futures = [pool.submit(self._one, p, seed + i, temperature) for i, p in enumerate(prompts)]
            return [f.result() for f in futures]

    @property
    def budget_left(self) -> int | None:
        """HTTP attempts left in the budget (None: unbounded)."""
        if self.config.request_budget is None:
            return None
        return max(0, self.config.request_budget - self._attempts)

    def _take_attempt(self) -> bool:
        with self._lock:
            if self.config.request_budget is not None and self._attempts >= self.config.request_budget:
                return False
            self._attempts += 1
            self.stats["requests"] += 1
            return True

    def _one(self, prompt: str, seed: int, temperature: float) -> Completion:
        messages = [{"role": "user", "content": prompt}]
        if self.config.system_prompt:
            messages.insert(0, {"role": "system", "content": self.config.system_prompt})
        jitter = random.Random(seed)
        for attempt in range(self.config.max_retries + 1):
            if not self._take_attempt():
                self._count_error("budget", "request budget exhausted")
                return Completion(None, "request budget exhausted")
            try:
                response = self.client.chat.completions.create(
                    model=self.model,
                    messages=messages,
                    max_tokens=self.config.max_new_tokens,
                    temperature=temperature,
                    top_p=self.config.top_p,
                    seed=seed,
                )
                text = response.choices[0].message.content if response.choices else None
                if text is None:
                    raise ValueError("the reply has no message content")
                return Completion(text)
            except Exception as error:  # noqa: BLE001 - every failure is classified, counted and reported
                kind, retryable = self._classify(error)
                message = f"{kind}: {str(error)[:200]}"
                if not retryable or attempt == self.config.max_retries:
                    self._count_error(kind, message)
                    return Completion(None, message)
                with self._lock:
                    self.stats["retries"] += 1
                delay = min(30.0, self.config.retry_backoff * 2**attempt) * (0.5 + jitter.random())
                logger.debug("retrying after %s (%.2f s): %s", kind, delay, message)
                time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _classify(self, error: Exception) -> tuple[str, bool]:
        openai = self.openai
        if isinstance(error, openai.APITimeoutError | openai.APIConnectionError):
            return type(error).__name__, True
        if isinstance(error, openai.APIStatusError):
            status = error.status_code
            return f"HTTP {status}", status in (408, 409, 429) or status >= 500
        return type(error).__name__, False

    def _count_error(self, kind: str, message: str) -> None:
        with self._lock:
            self.stats[f"error: {kind}"] += 1
            self.last_error = message


# ----------------------------------------------------------------------------------------------- registry
#: generator kind -> factory(model, config), for specs ``<kind>:<model>``; add a kind with ``GENERATORS.register``
GENERATORS: Registry[Callable[[str, GeneratorConfig], Any]] = Registry("generator kind")
GENERATORS.register("hf", HFGenerator)
GENERATORS.register("openai", OpenAIGenerator)


def register_generator(kind: str, factory: Callable[[str, GeneratorConfig], Any]) -> None:
    """Add a generator kind: ``factory(model, config)`` for specs ``<kind>:<model>``."""
    GENERATORS.register(kind, factory)


def load_generator(config: GeneratorConfig | str) -> Generator:
    """The generator a spec names: ``openai:<model>``, ``hf:<model>`` or a bare preset / folder (hf)."""
    if isinstance(config, str):
        config = GeneratorConfig(spec=config)
    kind, sep, model = config.spec.partition(":")
    if not sep or (kind not in GENERATORS and os.path.exists(config.spec)):
        kind, model = "hf", config.spec  # a bare preset name or a folder
    factory = GENERATORS.lookup(kind)
    if not model:
        raise ConfigError(f"generator {config.spec!r}: name a model after '{kind}:'")
    return factory(model, config)


@dataclass
class GenerationReport:
    """Counts of a generation run, for the stats file and the log."""

    documents: int = 0
    documents_done_before: int = 0  # finished by an earlier run (resumed)
    documents_failed: int = 0  # a reply errored; left for a resumed run
    replies: int = 0
    queries: int = 0  # replies that parsed into a query
    seconds: float = 0.0
    generator_stats: dict[str, int] = field(default_factory=dict)
    last_error: str | None = None
