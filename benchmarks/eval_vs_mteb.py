"""embedforge eval vs mteb itself: same model, same tasks, same machine, one run, several Matryoshka dims.

mteb side: for each dimension, ``mteb.evaluate`` on ``SentenceTransformer(path, truncate_dim=d)`` with
``normalize_embeddings=True`` (truncate + renormalize, as embedforge does), the tasks built from the
same local directories (MTEB's hub loaders cannot run offline; this is the local-data route of
FIELD-NOTES). embedforge side: ``embedforge.evaluation.evaluate`` with all dims at once and a cold
(memory-only) embedding cache. Task by task, mteb first, then embedforge, so that load from other work on the
machine lands on both sides alike. Prints wall times, their ratio, and the per-task scores side by side.

    python benchmarks/eval_vs_mteb.py                                   # bundled tasks (data/eval)
    python benchmarks/eval_vs_mteb.py --task-root ../shared/data/eval --dims 384 256 128
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--tasks", nargs="*", default=[])
    parser.add_argument("--task-root", default=None, help="default: the bundled data/eval when no --tasks")
    parser.add_argument("--dims", nargs="+", type=int, default=[384, 256, 128])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--tolerance", type=float, default=1e-4, help="max |score difference| counted as equal")
    args = parser.parse_args(argv)
    if not args.tasks and args.task_root is None:
        args.task_root = str(REPO / "data" / "eval")

    os.environ.setdefault("MTEB_CACHE", str(REPO / "runs" / ".mteb_cache"))  # before importing mteb
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")
    import mteb
    import torch
    from sentence_transformers import SentenceTransformer

    from embedforge.evaluation import evaluate, load_tasks
    from embedforge.evaluation.mteb_tasks import build_mteb_task
    from embedforge.evaluation.types import get_task_type
    from embedforge.models import resolve_model_path

    path = str(resolve_model_path(args.model))
    tasks = load_tasks(args.tasks, args.task_root)
    names = [t.spec.name for t in tasks]
    print(
        f"model {args.model} | tasks {', '.join(names)} | dims {args.dims} | batch {args.batch_size} "
        f"| torch threads {torch.get_num_threads()}"
    )
    SentenceTransformer(path).encode(["warm up"] * 8)  # page in the weights and kernels for both sides

    # Task by task, mteb then embedforge, so that a change in the machine's load (it may be shared) lands on
    # both sides alike; embedforge so gives up sharing texts between tasks (a cache hit it would have).
    theirs: dict[tuple[str, int], float] = {}
    ours: dict[tuple[str, int], float] = {}
    mteb_seconds = ours_seconds = 0.0
    texts_encoded = texts_requested = 0
    for task in tasks:
        # --- mteb itself: one full evaluation per dimension
        started = time.perf_counter()
        for dim in args.dims:
            model = SentenceTransformer(path)
            full_dim = model.get_embedding_dimension()
            model.truncate_dim = None if dim >= full_dim else dim
            (fresh,) = load_tasks([task.spec.directory])  # fresh data, as a new mteb run would load it
            result = mteb.evaluate(
                model,
                [build_mteb_task(fresh.spec, get_task_type(fresh.spec), fresh.data, plain=True)],
                cache=None,
                show_progress_bar=False,
                encode_kwargs={"batch_size": args.batch_size, "normalize_embeddings": dim < full_dim},
            )
            for task_result in result.task_results:
                (scores,) = task_result.scores.values()
                theirs[(task_result.task_name, dim)] = float(scores[0]["main_score"])
        mteb_seconds += time.perf_counter() - started

        # --- embedforge: all dimensions from one encoding pass
        started = time.perf_counter()
        report = evaluate(path, [task.spec.directory], dims=args.dims, batch_size=args.batch_size, cache_dir=None)
        ours_seconds += time.perf_counter() - started
        ours.update({(r["task"], r["dim"]): r["main_score"] for r in report.records})
        texts_encoded += report.texts_encoded
        texts_requested += report.texts_requested
        print(f"{task.spec.name}: mteb {mteb_seconds:.1f} s, embedforge {ours_seconds:.1f} s so far", flush=True)

    worst = 0.0
    print("\n| task | dim | mteb | embedforge | diff |\n|---|---:|---:|---:|---:|")
    for name in names:
        for dim in args.dims:
            diff = abs(ours[(name, dim)] - theirs[(name, dim)])
            worst = max(worst, diff)
            print(f"| {name} | {dim} | {theirs[(name, dim)]:.5f} | {ours[(name, dim)]:.5f} | {diff:.1e} |")
    print(f"\nmteb wall time:        {mteb_seconds:8.1f} s")
    print(
        f"embedforge wall time:  {ours_seconds:8.1f} s  ({texts_encoded} texts encoded for "
        f"{texts_requested} requested)"
    )
    print(f"time ratio embedforge / mteb = {ours_seconds / mteb_seconds:.3f}  (target <= 0.4)")
    print(
        f"scores equal within {args.tolerance:g}: {'yes' if worst <= args.tolerance else 'NO'} (max diff {worst:.1e})"
    )
    return 0 if worst <= args.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
