"""Query generation speed of ``embedforge synth`` with a local model: queries/s, batched vs one prompt at a time.

    python benchmarks/synth_speed.py                      # SmolLM2-135M-Instruct, 2 threads, writes docs/BENCHMARKS.md
    python benchmarks/synth_speed.py --batch-sizes 1 8 32 --prompts 64 --no-docs

Prompts are the built-in ``question`` template over Debian package descriptions (DebianPackageRetrievalDev's
corpus, a seeded sample); sampling as ``embedforge synth`` does it (temperature 0.8, top-p 0.95, at most
``--max-new-tokens`` tokens). The peer measured in the same run is the same generator one prompt at a time
(batch size 1); the ratio is what batching buys. The load average is printed too: on a shared machine every
figure is a lower bound of what the CPU can do alone.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import platform
import re
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "data" / "eval" / "DebianPackageRetrievalDev"
START, END = "<!-- synth-speed:start -->", "<!-- synth-speed:end -->"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generator", default="SmolLM2-135M-Instruct")
    parser.add_argument("--corpus", default=str(CORPUS))
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--prompts", type=int, default=32, help="prompts per batched measurement")
    parser.add_argument("--prompts-unbatched", type=int, default=4, help="prompts for batch size 1 (slow)")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default=None, help="cpu (default when no GPU) | cuda")
    parser.add_argument("--results", default=str(REPO / "docs" / "BENCHMARKS.md"))
    parser.add_argument("--no-docs", action="store_true", help="print only; leave docs/BENCHMARKS.md alone")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")

    import torch

    from embedforge.synth import GeneratorConfig, HFGenerator, load_template, read_documents, sample_documents

    torch.set_num_threads(args.threads)
    documents = sample_documents(read_documents(args.corpus), max(args.prompts, args.prompts_unbatched), seed=0)
    template = load_template("question")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    rows = []
    for batch_size in args.batch_sizes:
        count = args.prompts_unbatched if batch_size == 1 else args.prompts
        prompts = [template.render(document=d.text[:2000]) for d in documents[:count]]
        config = GeneratorConfig(
            spec=args.generator, batch_size=batch_size, max_new_tokens=args.max_new_tokens, device=device
        )
        generator = HFGenerator(args.generator, config)
        generator.generate(prompts[:1], seed=0)  # warm-up (first-call allocations)
        load = os.getloadavg()[0]
        started = time.perf_counter()
        replies = generator.generate(prompts, seed=1)
        seconds = time.perf_counter() - started
        tokens = sum(len(generator.tokenizer(r.text, add_special_tokens=False)["input_ids"]) for r in replies)
        rows.append((batch_size, count, seconds, count / seconds, tokens / seconds, load))
        print(f"batch {batch_size}: {count} queries in {seconds:.1f} s = {count / seconds:.3f} queries/s", flush=True)
        del generator

    base = next((r for r in rows if r[0] == 1), None)
    where = f"{device}, {args.threads} threads" if device == "cpu" else device
    lines = [
        START,
        "## Synthetic data: query generation speed",
        "",
        f"`python benchmarks/synth_speed.py` ({datetime.date.today().isoformat()}, {platform.machine()} "
        f"{where}): {args.generator}, the `question` template over Debian package descriptions, "
        f"at most {args.max_new_tokens} new tokens, sampling as `embedforge synth` does.",
        "",
        "| batch size | queries | seconds | queries/s | generated tokens/s | vs batch 1 | load average (1 min) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for batch_size, count, seconds, qps, tps, load in rows:
        ratio = f"{qps / base[3]:.2f}x" if base else "-"
        lines.append(f"| {batch_size} | {count} | {seconds:.1f} | {qps:.3f} | {tps:.1f} | {ratio} | {load:.1f} |")
    lines += [
        "",
        (
            f"The machine was shared with other jobs (load average up to {max(r[5] for r in rows):.1f} on "
            f"{os.cpu_count()} cores): these are lower bounds. "
            if max(r[5] for r in rows) > (os.cpu_count() or 1)
            else ""
        )
        + "At the batched rate, the queries of a corpus take `documents x queries-per-doc / (queries/s)` seconds; "
        "an OpenAI-compatible endpoint (`--generator openai:MODEL --base-url ...`, e.g. vLLM on a GPU) is the "
        "way past one CPU.",
        END,
    ]
    section = "\n".join(lines)
    print(section)
    if not args.no_docs:
        from embedforge.utils.io import atomic_write_text

        path = Path(args.results)
        text = path.read_text(encoding="utf-8")
        pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.DOTALL)
        text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section
        atomic_write_text(path, text.rstrip() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
