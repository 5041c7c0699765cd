"""Generators: templates reach a real (tiny) transformers model; the endpoint client retries and reports."""

from __future__ import annotations

import pytest

from embedforge.errors import ConfigError
from embedforge.synth import GeneratorConfig, HFGenerator, OpenAIGenerator, load_generator, load_template
from tests.synth.conftest import StubServer


def test_templates_reach_the_model_through_the_chat_template(tiny_chat_llm, tmp_path):
    template_file = tmp_path / "mine.txt"
    template_file.write_text("Zebracorn task. Read: {document}\nWrite a query.")
    template = load_template(template_file)
    generator = HFGenerator(str(tiny_chat_llm), GeneratorConfig(max_new_tokens=5, batch_size=2))
    seen = []
    original = generator.model.generate

    def spy(**kwargs):
        seen.append(kwargs["input_ids"])
        return original(**kwargs)

    generator.model.generate = spy
    prompts = [template.render(document=d) for d in ("volcanoes erupt lava", "cats purr", "tides follow the moon")]
    replies = generator.generate(prompts, seed=1)

    assert len(replies) == 3 and all(isinstance(r.text, str) and r.error is None for r in replies)
    assert [ids.shape[0] for ids in seen] == [2, 1]  # batched by batch_size
    decoded = generator.tokenizer.batch_decode(seen[0], skip_special_tokens=False)
    assert "zebracorn task" in decoded[0] and "volcanoes erupt lava" in decoded[0]  # (the tokenizer lowercases)
    squeezed = decoded[0].replace(" ", "")
    assert squeezed.startswith("<|user|>") and squeezed.endswith("<|assistant|>")  # the chat template wraps it
    assert "cats purr" in decoded[1]
    assert seen[0][1, 0] == generator.tokenizer.pad_token_id  # left padding: the shorter prompt is padded in front


def test_seeded_sampling_is_reproducible(tiny_chat_llm):
    generator = HFGenerator(str(tiny_chat_llm), GeneratorConfig(max_new_tokens=6, temperature=1.0))
    prompts = ["a b c", "d e f g h"]
    first = [c.text for c in generator.generate(prompts, seed=7)]
    assert [c.text for c in generator.generate(prompts, seed=7)] == first


def test_a_model_without_chat_template_is_refused(tiny_decoder_dir):
    with pytest.raises(ConfigError, match="no chat template"):
        HFGenerator(str(tiny_decoder_dir("llama")), GeneratorConfig())


def test_unknown_generator_kind_names_the_kinds():
    with pytest.raises(ConfigError, match="unknown generator kind 'vllm'.*hf, openai"):
        load_generator("vllm:some-model")


def test_endpoint_errors_are_retried_with_backoff():
    with StubServer(lambda prompt: "what is " + prompt, fail=[503, 429, 500]) as server:
        config = GeneratorConfig(spec="openai:stub", base_url=server.url, max_retries=4, retry_backoff=0.001)
        generator = load_generator(config)
        assert isinstance(generator, OpenAIGenerator)
        (reply,) = generator.generate(["cats"], seed=3)
    assert reply.text == "what is cats" and reply.error is None
    assert len(server.requests) == 4  # three failures, then the answer
    assert generator.stats["retries"] == 3 and generator.stats["requests"] == 4
    assert server.requests[-1]["seed"] == 3 and server.requests[-1]["messages"][-1]["content"] == "cats"


def test_endpoint_errors_past_the_retries_are_reported_not_raised():
    with StubServer(lambda prompt: "never", fail=[500] * 10 + [400]) as server:
        config = GeneratorConfig(spec="openai:stub", base_url=server.url, max_retries=2, retry_backoff=0.001)
        generator = load_generator(config)
        (reply,) = generator.generate(["cats"], seed=0)
        assert reply.text is None and reply.error.startswith("HTTP 500")
        assert len(server.requests) == 3  # one try + two retries
        server.fail = [400, 400]
        (bad,) = generator.generate(["dogs"], seed=0)
        assert bad.error.startswith("HTTP 400") and len(server.requests) == 4  # a client error is not retried
    assert generator.stats["error: HTTP 500"] == 1 and generator.stats["error: HTTP 400"] == 1
    assert "HTTP 400" in generator.last_error


def test_request_budget_bounds_the_attempts():
    with StubServer(lambda prompt: "q", fail=[503] * 10) as server:
        config = GeneratorConfig(
            spec="openai:stub",
            base_url=server.url,
            max_retries=5,
            retry_backoff=0.001,
            request_budget=4,
            concurrency=2,
        )
        generator = load_generator(config)
        replies = generator.generate(["a", "b", "c"], seed=0)
    assert len(server.requests) == 4 and generator.budget_left == 0
    assert all(r.text is None for r in replies)
    assert any(r.error == "request budget exhausted" for r in replies)


def test_builtin_claim_template_is_named_not_in_the_default_rotation():
    from embedforge.synth.pipeline import SynthConfig
    from embedforge.synth.templates import QUERY_TYPES, builtin_templates

    claim = load_template("claim")
    assert "claim" in builtin_templates() and "claim" not in QUERY_TYPES
    assert "claim" not in SynthConfig(corpus="c", output="o.jsonl").templates
    rendered = claim.render(document="Aspirin lowers fever in adults.")
    assert "Aspirin lowers fever in adults." in rendered and "{document}" not in rendered
