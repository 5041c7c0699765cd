"""Rebuild the real data bundled in ``data/`` from the gathered copies in ``../shared/data``.

    python scripts/make_bundled_data.py [--shared ../shared/data]

What it copies (sources and licenses in data/README.md):
  eval/  STSBenchmark (test), Banking77Classification, DebianPackageRetrievalDev, DebianSectionClusteringDev
  train/ snli/triplets.jsonl, stsb/train.jsonl, debian/pairs.jsonl.gz (a seeded 10,000-pair sample)
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EVAL_TASKS = {
    "STSBenchmark": ["task.json", "test.jsonl", "LICENSE.txt"],
    "Banking77Classification": ["task.json", "train.jsonl", "test.jsonl", "LICENSE"],
    "DebianPackageRetrievalDev": ["task.json", "corpus.jsonl", "queries.jsonl", "qrels/test.tsv"],
    "DebianSectionClusteringDev": ["task.json", "test.jsonl"],
}
DEBIAN_SAMPLE = 10_000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shared", default=str(REPO.parent / "shared" / "data"))
    shared = Path(parser.parse_args().shared)
    out = REPO / "data"
    for task, files in EVAL_TASKS.items():
        for name in files:
            target = out / "eval" / task / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shared / "eval" / task / name, target)
    for source, target in [
        ("train/snli/triplets.jsonl", "train/snli/triplets.jsonl"),
        ("train/snli/LICENSE.esnli-repo", "train/snli/LICENSE.esnli-repo"),
        ("eval/STSBenchmark/train.jsonl", "train/stsb/train.jsonl"),
        ("eval/STSBenchmark/LICENSE.txt", "train/stsb/LICENSE.txt"),
    ]:
        (out / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shared / source, out / target)
    with gzip.open(shared / "train/debian_descriptions/pairs.jsonl.gz", "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    sample = sorted(random.Random(0).sample(range(len(rows)), DEBIAN_SAMPLE))
    (out / "train/debian").mkdir(parents=True, exist_ok=True)
    # mtime=0: the same bytes on every rebuild
    with open(out / "train/debian/pairs.jsonl.gz", "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        for index in sample:
            gz.write((json.dumps(rows[index], ensure_ascii=False) + "\n").encode("utf-8"))
    print(f"wrote {out}")  # noqa: T201


if __name__ == "__main__":
    main()
