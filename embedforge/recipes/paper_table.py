"""The paper recipes' values beside their papers', rendered from the recipes' own source comments.

Every setting of a paper recipe ends with a comment that says where its value comes from:

* ``# paper §4.1`` — the paper gives this value, in that section;
* ``# paper §4.1: 512 per GPU x 48 GPUs`` — the paper gives it in another form (what follows the colon);
* ``# ours`` / ``# ours (reason)`` — the paper does not give it.

:func:`recipe_rows` reads those comments (PyYAML drops comments, so the file is read line by line);
``python -m embedforge.recipes.paper_table --write docs/recipes.md`` renders the table between the
``<!-- paper-table:start -->`` / ``<!-- paper-table:end -->`` markers, and a test keeps the two in sync.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from embedforge.utils.io import atomic_write_text

PAPER_RECIPES = ("kalm-v2", "seed1.5", "sea")
START, END = "<!-- paper-table:start -->", "<!-- paper-table:end -->"

# keys that are plumbing, not settings a paper could give (names, files, the run's own bookkeeping)
_EXEMPT = {"name", "path", "kind", "columns", "type", "description", "output_dir", "init", "format"}
_LINE = re.compile(r"^(?P<indent>\s*)(?P<item>- )?(?P<key>[A-Za-z_][\w.]*):\s*(?P<rest>.*)$")


@dataclass(frozen=True)
class Row:
    """One setting of a recipe and its source."""

    key: str  # dotted path, datasets by name: ``finetune.datasets.snli.symmetric``
    value: str  # as written in the YAML
    source: str  # the comment ("" when missing)

    @property
    def ours(self) -> bool:
        return self.source.startswith("ours")

    @property
    def section(self) -> str:
        match = re.match(r"paper (§?[^:]+?)(?::|$)", self.source)
        return match.group(1).strip() if match and not self.ours else ""

    @property
    def paper_value(self) -> str:
        if self.ours:
            return "—"
        _, colon, given = self.source.partition(":")
        return given.strip() if colon else "same"


def recipe_rows(path: str | Path) -> list[Row]:
    """Every setting line of a recipe (outside ``eval``), with its source comment."""
    rows: list[Row] = []
    stack: list[tuple[int, str]] = []  # (indent, key) of the enclosing mappings
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None:
            continue
        indent = len(match["indent"]) + (2 if match["item"] else 0)
        rest = match["rest"]
        value, _, comment = ("", "", rest[1:]) if rest.startswith("#") else rest.partition(" #")
        value = value.strip()
        key = match["key"]
        floor = indent - 1 if match["item"] else indent  # a new list item also closes the previous one
        while stack and stack[-1][0] >= floor:
            stack.pop()
        if match["item"] and key == "name":  # a list item, named by its `name`
            stack.append((indent - 1, value))
        parents = [k for _, k in stack]
        if not value or value.startswith(("&", "*")):
            stack.append((indent, key))
            continue
        if key in _EXEMPT or (parents and parents[0] == "eval") or (not parents and key != "seed"):
            continue
        rows.append(Row(".".join([*parents, key]), value, comment.strip().lstrip("#").strip()))
    return rows


def render(recipes_dir: str | Path) -> str:
    """The markdown tables (one per paper recipe) with a count of our values."""
    parts = []
    for name in PAPER_RECIPES:
        rows = recipe_rows(Path(recipes_dir) / f"{name}.yaml")
        ours = sum(row.ours for row in rows)
        parts.append(f"### `recipes/{name}.yaml` ({len(rows) - ours} values from the paper, {ours} ours)\n")
        parts.append("| setting | recipe | paper | source |\n|---|---|---|---|")
        for row in rows:
            source = f"paper {row.section}" if row.section else row.source or "**missing**"
            parts.append(f"| `{row.key}` | `{row.value}` | {row.paper_value} | {source} |")
        parts.append("")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", default=str(Path(__file__).resolve().parents[2] / "recipes"))
    parser.add_argument("--write", help="a markdown file whose table between the markers is replaced")
    args = parser.parse_args(argv)
    table = render(args.recipes)
    if not args.write:
        sys.stdout.write(table)
        return 0
    path = Path(args.write)
    text = path.read_text(encoding="utf-8")
    if START not in text or END not in text:
        sys.stderr.write(f"{path}: no {START} ... {END} markers\n")
        return 2
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    atomic_write_text(path, f"{head}{START}\n{table}{END}{tail}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
