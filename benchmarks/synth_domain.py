"""Documents-only domain adaptation: synthesize queries for a corpus, filter, mine, train, evaluate on its task.

    python benchmarks/synth_domain.py --corpora debian --docs 300              # writes docs/synth_domain.md
    python benchmarks/synth_domain.py --corpora debian scifact --resume       # after a kill: finished work reused

For each corpus, all-MiniLM-L6-v2 is adapted using **only the documents** of the task's corpus (no queries, no
qrels, no summaries): SmolLM2-135M-Instruct writes ``--queries-per-doc`` queries for a seeded sample of ``--docs``
documents (the built-in question / keywords / reasoning templates in turn), every pair is scored by the round-trip
filter under the base model (rank of its document among the whole corpus), hard negatives are mined for every pair
from the corpus with the base model, and decontamination drops pairs sharing a text with the task's evaluation
queries. Two training sets come out of that one file:

* **filter on**: the pairs whose document ranks in the top ``--top-k`` for its query (Seed1.5: "retained only
  highly relevant query-document pairs");
* **filter off**: every pair the mining keeps. Mining (ranks 10-50, the 95%-of-positive false-negative filter)
  drops a pair whose window has fewer than ``--num-negatives`` candidates scoring below its document, which happens
  when the document ranks far down for its own query: so "off" still loses the worst pairs, "on" keeps only pairs
  whose document ranks in the top ``--top-k``.

Each set trains one fine-tuning stage (InfoNCE with in-batch and the mined negatives, ``--steps`` steps of batch 32,
or a quarter of the filtered set when that is smaller)
with ``--seeds`` training seeds (the synthetic data is generated once, with ``--gen-seed``); every model is then
evaluated on the task (nDCG@10, MTEB protocol), as is the base.

Noise rule (stated before the run): the one every benchmark uses, ``benchmarks/_common.NOISE_RULE``. Against
the base (one deterministic score) the paired differences are trained - base, per seed.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import logging
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
from _common import NOISE_RULE, Paired  # noqa: E402  (one noise rule; the script's folder is on sys.path)

SHARED = REPO.parent / "shared" / "data" / "eval"
CORPORA = {  # name -> the task whose corpus is the documents and whose queries are the test
    "debian": "DebianPackageRetrievalDev",
    "scifact": "SciFact",
}
BASE = "all-MiniLM-L6-v2"
DEFAULT_OUTPUT = str(REPO / "runs" / "synth_domain")
VARIANTS = ("filter on", "filter off")


def train_recipe(
    name: str, data: Path, seed: int, steps: int, output: Path, max_seq_length: int, batch_size: int
) -> dict:
    return {
        "name": name,
        "model": {"base": BASE},
        "output_dir": str(output),
        "seed": seed,
        "stages": {
            "finetune": {
                "datasets": [{"name": "synth", "path": str(data), "kind": "triplets"}],
                "loss": {"temperature": 0.05},
                "batch_size": batch_size,
                "max_seq_length": max_seq_length,
                "max_steps": steps,
                "learning_rate": 2e-5,
                "warmup_ratio": 0.1,
                "save_steps": steps,
                "logging_steps": 10,
                "trainer_args": {"disable_tqdm": True},
            }
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpora", nargs="+", default=["debian", "scifact"], choices=sorted(CORPORA))
    parser.add_argument("--docs", type=int, default=300, help="documents to write queries for, per corpus")
    parser.add_argument("--queries-per-doc", type=int, default=1)
    parser.add_argument("--top-k", type=int, default=3, help="round-trip filter: document rank < k")
    parser.add_argument("--num-negatives", type=int, default=2)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44], help="training seeds")
    parser.add_argument("--gen-seed", type=int, default=42, help="document sample and sampling seed")
    parser.add_argument("--generator", default="SmolLM2-135M-Instruct")
    parser.add_argument(
        "--templates", nargs="+", default=None, help="query types (built-in names, .txt files); default: the rotation"
    )
    parser.add_argument(
        "--strip-lead-ins", action="store_true", help="cut 'The document supports the finding that' lead-ins"
    )
    parser.add_argument(
        "--compare-to", default=None, help="another --output folder: per-seed paired differences against its runs"
    )
    parser.add_argument("--gen-batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--task-root", default=str(SHARED), help="folder holding the task directories")
    parser.add_argument("--output", default=DEFAULT_OUTPUT)
    parser.add_argument("--results", default=str(REPO / "docs" / "synth_domain.md"))
    parser.add_argument("--resume", action="store_true", help="reuse generated queries, mined files, trained runs")
    parser.add_argument("--report-only", action="store_true", help="render the results of what has finished")
    args = parser.parse_args(argv)
    if args.compare_to is not None and not Path(args.compare_to).is_dir():
        parser.error(f"--compare-to {args.compare_to}: no such folder (give an earlier run's --output)")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("embedforge.synth").setLevel(logging.INFO)
    warnings.filterwarnings("ignore")

    import torch

    torch.set_num_threads(args.threads)
    work = Path(args.output)
    if not args.report_only:
        for corpus in args.corpora:
            run_corpus(corpus, args, work / corpus)
    report = render(args, work)
    from embedforge.utils.io import atomic_write_text

    atomic_write_text(Path(args.results), report)
    print(report)
    return 0


def run_corpus(corpus: str, args: argparse.Namespace, work: Path) -> None:
    from embedforge.evaluation import evaluate, load_tasks
    from embedforge.recipes import recipe_from_dict, run_recipe
    from embedforge.synth import GeneratorConfig, SynthConfig, synthesize
    from embedforge.utils.io import atomic_write_text

    task_dir = Path(args.task_root) / CORPORA[corpus]
    tasks = load_tasks([task_dir])
    work.mkdir(parents=True, exist_ok=True)
    base_file = work / "base.json"
    if not (args.resume and base_file.exists()):
        started = time.perf_counter()
        score = evaluate(BASE, tasks, work / "eval" / "base", model_name="base", batch_size=64).main_scores()
        atomic_write_text(base_file, json.dumps({"score": score, "seconds": time.perf_counter() - started}))
    print(f"{corpus}: base {json.loads(base_file.read_text())['score']}", flush=True)

    data = work / "synth.jsonl"
    config = SynthConfig(
        corpus=str(task_dir),
        output=str(data),
        generator=GeneratorConfig(spec=args.generator, batch_size=args.gen_batch_size, max_new_tokens=40),
        queries_per_doc=args.queries_per_doc,
        max_docs=args.docs,
        **({"templates": list(args.templates)} if args.templates else {}),
        strip_lead_ins=args.strip_lead_ins,
        docs_per_batch=args.gen_batch_size,
        seed=args.gen_seed,
        filter_model=BASE,
        filter_top_k=None,  # score every pair; the two variants are cut from the one file below
        num_negatives=args.num_negatives,
        range_min=10,
        range_max=50,
        decontaminate_against=[str(task_dir)],
        overwrite=not args.resume,
    )
    stats_file = work / "synth.stats.json"
    wanted = {k: v for k, v in dataclasses.asdict(config).items() if k != "overwrite"}
    wanted["generator"].pop("api_key_env")  # the stats file leaves it out
    previous = json.loads(stats_file.read_text())["settings"] if stats_file.exists() else {}
    if not (args.resume and data.exists() and all(previous.get(k) == v for k, v in wanted.items())):
        synthesize(config)
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    files = {"filter off": data, "filter on": work / "filter-on.jsonl"}
    kept = [r for r in rows if r["filter_rank"] < args.top_k]
    atomic_write_text(files["filter on"], "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept))
    print(f"{corpus}: {len(rows)} synthetic pairs, {len(kept)} pass the round-trip filter (top {args.top_k})")
    # one batch size for both variants, small enough that a batch of distinct texts exists in the smaller set
    batch_size = min(32, len(kept) // 4)
    if batch_size < 2:
        print(f"{corpus}: too few filtered pairs ({len(kept)}) to train; more --docs or a larger --top-k")
        return

    for seed in args.seeds:  # seeds outermost: an interrupted run still has paired on/off results
        for variant in VARIANTS:
            slug = f"{variant.replace(' ', '-')}-seed{seed}"
            done = work / "eval" / slug / "variant.json"
            spec = train_recipe(slug, files[variant], seed, args.steps, work / slug, args.max_seq_length, batch_size)
            if args.resume and done.exists() and json.loads(done.read_text())["recipe"] == spec:
                continue
            started = time.perf_counter()
            result = run_recipe(recipe_from_dict(spec, f"synth_domain {slug}"), overwrite=True)
            trained = time.perf_counter() - started
            score = evaluate(result.final_model, tasks, work / "eval" / slug, model_name=slug, batch_size=64)
            record = {
                "recipe": spec,
                "variant": variant,
                "seed": seed,
                "rows": len(kept) if variant == "filter on" else len(rows),
                "score": score.main_scores(),
                "train_seconds": round(trained, 1),
            }
            atomic_write_text(done, json.dumps(record, indent=1))
            print(f"{corpus} {slug}: {record['score']} ({trained:.0f} s)", flush=True)


def render(args: argparse.Namespace, work: Path) -> str:
    lines = [
        "# Documents-only domain adaptation with synthetic queries",
        "",
        f"Regenerate: `python benchmarks/synth_domain.py --corpora {' '.join(args.corpora)} --docs {args.docs} "
        f"--queries-per-doc {args.queries_per_doc} --steps {args.steps} --seeds {' '.join(map(str, args.seeds))}"
        + (f" --templates {' '.join(args.templates)}" if args.templates else "")
        + (" --strip-lead-ins" if args.strip_lead_ins else "")
        + (f" --compare-to {args.compare_to}" if args.compare_to else "")
        + (f" --output {args.output} --results {args.results}" if args.output != DEFAULT_OUTPUT else "")
        + "` "
        f"(add `--resume` to reuse finished work; {datetime.date.today().isoformat()}, {platform.machine()} CPU, "
        f"{args.threads} threads, load average {os.getloadavg()[0]:.1f} when rendered).",
        "",
        (__doc__ or "").split("\n\n", 2)[2].strip(),
        "",
        f"The rule: {NOISE_RULE}.",
        "",
    ]
    for corpus in args.corpora:
        task = CORPORA[corpus]
        base_file = work / corpus / "base.json"
        if not base_file.exists():
            lines += [f"## {task}", "", "Not run.", ""]
            continue
        base = json.loads(base_file.read_text())["score"][task]
        stats_file = work / corpus / "synth.stats.json"
        stats = json.loads(stats_file.read_text()) if stats_file.exists() else {}
        records = {}
        for path in sorted((work / corpus / "eval").glob("*/variant.json")):
            record = json.loads(path.read_text())
            records[(record["variant"], record["seed"])] = record
        gen = stats.get("generation", {})
        lines += [f"## {task}", ""]
        if stats:
            rate = gen.get("queries", 0) / max(gen.get("seconds", 1), 1e-9)
            reused = gen.get("documents_done_before", 0)
            written = (
                f"written by {args.generator} in {gen.get('seconds', 0):.0f} s of wall time ({rate:.2f} "
                "queries/s; pauses and other jobs count, docs/BENCHMARKS.md has the speed)"
                if not reused
                else f"by {args.generator}, the replies of {reused} documents reused from the generation log "
                f"`{work.name}/{corpus}/synth.generations.jsonl` ({gen.get('queries', 0)} queries written this run)"
            )
            lines += [
                f"Synthetic data: {gen.get('documents')} documents, {stats.get('pairs_generated')} queries {written}, "
                f"{stats.get('decontaminated', 0)} dropped by decontamination, "
                f"{stats.get('mining', {}).get('rows', '?')} rows with {args.num_negatives} mined negatives; "
                f"filter on keeps {filtered(work / corpus / 'filter-on.jsonl')}.",
                "",
            ]
        lines += [
            "nDCG@10 x100 (MTEB protocol). Δ = trained - base, per seed.",
            "",
            "| model | rows | " + " | ".join(f"seed {s}" for s in args.seeds) + " | mean | Δ mean | std |",
            "|---|---:|" + "---:|" * (len(args.seeds) + 3),
            f"| {BASE} (base) | - | "
            + " | ".join(f"{100 * base:.2f}" for _ in args.seeds)
            + f" | {100 * base:.2f} | | |",
        ]
        scores: dict[str, dict[int, float]] = {}
        for variant in VARIANTS:
            per_seed = {s: records[(variant, s)]["score"][task] for s in args.seeds if (variant, s) in records}
            scores[variant] = per_seed
            if not per_seed:
                lines.append(f"| {variant} | | " + " | ".join("-" for _ in args.seeds) + " | | | |")
                continue
            values = list(per_seed.values())
            rows = next(r["rows"] for (v, _), r in records.items() if v == variant)
            cells = [f"{100 * per_seed[s]:.2f}" if s in per_seed else "-" for s in args.seeds]
            std = statistics.stdev(values) if len(values) > 1 else float("nan")
            lines.append(
                f"| {variant} | {rows} | " + " | ".join(cells) + f" | {100 * statistics.mean(values):.2f} | "
                f"{100 * (statistics.mean(values) - base):+.2f} | {100 * std:.2f} |"
            )
        lines += ["", "Verdicts (noise rule above):", ""]
        for variant in VARIANTS:
            lines.append(f"- {variant} vs base: {verdict({s: v - base for s, v in scores[variant].items()})}")
        paired = {
            s: scores["filter on"][s] - scores["filter off"][s]
            for s in args.seeds
            if s in scores["filter on"] and s in scores["filter off"]
        }
        lines.append(f"- filter on vs filter off: {verdict(paired)}")
        if args.compare_to is not None:  # the same experiment on other data (e.g. without --strip-lead-ins)
            other = {}
            for path in sorted((Path(args.compare_to) / corpus / "eval").glob("*/variant.json")):
                record = json.loads(path.read_text())
                other[(record["variant"], record["seed"])] = record["score"][task]
            for variant in VARIANTS:
                diffs = {s: v - other[(variant, s)] for s, v in scores[variant].items() if (variant, s) in other}
                lines.append(f"- {variant}, this run vs `{args.compare_to}`: {verdict(diffs)}")
        lines.append("")
    return "\n".join(lines)


def filtered(path: Path) -> str:
    """Rows of the filter-on file, or '?' before it exists."""
    return str(len(path.read_text().splitlines())) if path.exists() else "?"


def verdict(differences: dict[int, float]) -> str:
    """Apply :data:`_common.NOISE_RULE` to per-seed paired differences."""
    if not differences:
        return "not run"
    paired = Paired(list(differences.values()))
    listed = ", ".join(f"{100 * d:+.2f}" for d in paired.differences)
    n = len(paired.differences)
    std = f" ± {100 * paired.std:.2f}" if n > 1 else ""
    return f"{paired.verdict}: per-seed {listed}, mean {100 * paired.mean:+.2f}{std} ({n} seeds)"


if __name__ == "__main__":
    sys.exit(main())
