"""Prompt templates: plain text files with ``{placeholders}``, replaceable by the user.

The built-in templates live in ``embedforge/synth/templates/*.txt``, one file per template; its name is the file
name without ``.txt``:

* query types (placeholder ``{document}``): ``question`` (a natural question), ``keywords`` (a keyword query),
  ``reasoning`` (a question that needs understanding rather than word overlap; Seed1.5-Embedding's
  reasoning-intensive queries); ``claim`` (a declarative claim the document supports, the query style of
  fact-checking retrieval such as SciFact, FEVER or Climate-FEVER; not in the default rotation, name it);
* judges: ``judge_pointwise`` (``{query}``, ``{document}``; the reply is a number) and ``judge_listwise``
  (``{query}``, ``{candidates}``; the reply lists the numbers of the relevant candidates).

A template argument is a built-in name, a ``.txt`` file, or a folder of ``.txt`` files (each a template). The
whole file is the user message of a chat; placeholders are replaced literally (``str.replace``), so other braces
in a template or a document need no escaping.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from embedforge.errors import ConfigError, DataError, did_you_mean

BUILTIN_DIR = Path(__file__).parent / "templates"
QUERY_TYPES = ("question", "keywords", "reasoning")
#: placeholders each kind of template must contain
REQUIRED_FIELDS = {
    "query": ("{document}",),
    "pointwise": ("{query}", "{document}"),
    "listwise": ("{query}", "{candidates}"),
}


@dataclass(frozen=True)
class Template:
    """A named prompt template (the user message of a chat)."""

    name: str
    text: str
    source: str  # the file it came from

    def render(self, **fields: str) -> str:
        """The template with each ``{field}`` replaced by its value."""
        text = self.text
        for key, value in fields.items():
            text = text.replace("{" + key + "}", value)
        return text


def builtin_templates() -> list[str]:
    """The names of the built-in templates."""
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.txt"))


def load_template(spec: str | os.PathLike[str], kind: str = "query") -> Template:
    """One template from a built-in name or a ``.txt`` file, checked for the placeholders ``kind`` needs.

    Raises:
        ConfigError: an unknown name, or a template without a required placeholder.
    """
    path = Path(spec)
    if not path.is_file():
        if os.sep in str(spec) or str(spec).endswith(".txt"):
            raise DataError("template file not found", path, hint=f"or a built-in: {', '.join(builtin_templates())}")
        path = BUILTIN_DIR / f"{spec}.txt"
        if not path.is_file():
            raise ConfigError(f"unknown template {str(spec)!r}.{did_you_mean(str(spec), builtin_templates())}")
    text = path.read_text(encoding="utf-8").strip()
    missing = [f for f in REQUIRED_FIELDS[kind] if f not in text]
    if missing:
        raise DataError(
            f"a {kind} template needs {', '.join(REQUIRED_FIELDS[kind])}; missing {', '.join(missing)}",
            path,
        )
    return Template(path.stem, text, str(path))


def load_templates(specs: Iterable[str | os.PathLike[str]], kind: str = "query") -> list[Template]:
    """Templates from names, files and folders (a folder: each ``*.txt`` in it, sorted); names must be unique."""
    templates: list[Template] = []
    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            files = sorted(path.glob("*.txt"))
            if not files:
                raise DataError("no *.txt templates in this folder", path)
            templates.extend(load_template(f, kind) for f in files)
        else:
            templates.append(load_template(spec, kind))
    if not templates:
        raise ConfigError("templates: give at least one (built-in: " + ", ".join(QUERY_TYPES) + ")")
    names = [t.name for t in templates]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"templates: names must be unique, {', '.join(duplicates)} given twice")
    return templates
