"""Every code block in README.md runs as written, or says why not.

A block is run according to the HTML comment on the line above its fence:

* none: ``bash`` blocks run with ``bash -e`` in the repository root (``.venv/bin`` first on PATH),
  ``python`` blocks with this interpreter, ``yaml`` blocks are merged into ``recipes/quickstart.yaml``
  at the top level and the recipe is loaded (validated, nothing trained);
* ``<!-- readme-test: yaml-fragment KEY.PATH -->``: the YAML goes under that key of the quickstart recipe;
* ``<!-- readme-test: skip (REASON) -->``: too slow for the test suite, or needs a server; the reason is required.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
# a ``serving-snippet`` block is run against a live server by tests/serving/test_readme_clients.py
FENCE = re.compile(
    r"(?:<!-- (?:readme-test: (?P<mark>[^>]*?)|(?P<served>serving-snippet): [^>]*?) -->\n)?"
    r"```(?P<lang>\w*)\n(?P<body>.*?)```",
    re.S,
)


def readme_blocks() -> list[tuple[int, str, str, str]]:
    """(line, language, marker, body) of every fenced block in README.md."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    return [
        (
            text[: m.start("lang")].count("\n") + 1,
            m["lang"],
            "skip (tests/serving/test_readme_clients.py)" if m["served"] else (m["mark"] or "").strip(),
            m["body"],
        )
        for m in FENCE.finditer(text)
    ]


BLOCKS = readme_blocks()


def test_every_block_has_a_language_and_skips_give_a_reason():
    assert BLOCKS, "no code blocks found"
    for line, lang, mark, _ in BLOCKS:
        assert lang in ("bash", "python", "yaml"), f"README.md:{line}: block language {lang!r} is not runnable"
        if mark.startswith("skip"):
            assert re.fullmatch(r"skip \(.+\)", mark), f"README.md:{line}: 'skip' needs a reason in parentheses"
        else:
            assert mark == "" or mark.startswith("yaml-fragment "), f"README.md:{line}: unknown marker {mark!r}"


RUNNABLE = [b for b in BLOCKS if not b[2].startswith("skip")]


@pytest.mark.parametrize("block", RUNNABLE, ids=[f"README.md:{b[0]}" for b in RUNNABLE])
def test_readme_block_runs(block, tmp_path):
    line, lang, mark, body = block
    env = {
        **os.environ,
        "PATH": f"{REPO / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(REPO),
        "HF_HUB_OFFLINE": "1",
    }
    if lang == "yaml":
        check_recipe_fragment(yaml.safe_load(body), mark, tmp_path)
        return
    command = ["bash", "-e", "-c", body] if lang == "bash" else [sys.executable, "-c", body]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"README.md:{line} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"


def check_recipe_fragment(fragment: dict, mark: str, tmp_path: Path) -> None:
    from embedforge.recipes import load_recipe

    recipe = yaml.safe_load((REPO / "recipes" / "quickstart.yaml").read_text(encoding="utf-8"))
    node = recipe
    for key in mark.removeprefix("yaml-fragment").split(".") if mark else []:
        if key.strip():
            node = node[key.strip()]
    node.update(fragment)
    path = REPO / "recipes" / f".readme-test-{os.getpid()}.yaml"  # beside the recipe: its relative paths hold
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    try:
        load_recipe(path)
    finally:
        path.unlink()
