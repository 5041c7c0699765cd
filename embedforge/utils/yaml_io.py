"""YAML for configs: duplicate keys are errors, and ``2e-5`` is a float.

PyYAML implements YAML 1.1, where a float needs a dot (``2e-5`` and ``1e3`` load as strings) and a repeated key
silently replaces the earlier one (two stages of one name: only the second runs). :func:`load_yaml` reads YAML
the way people write it: YAML 1.2's exponent floats, and a duplicate key is a ``yaml.MarkedYAMLError`` whose
mark points at the second occurrence.
"""

from __future__ import annotations

import re
from typing import Any

import yaml


class StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` plus exponent floats without a dot and an error on duplicate mapping keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                earlier = first.get(key)
            except TypeError:  # an unhashable key: SafeLoader reports it below
                continue
            if earlier is not None:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (first on line {earlier.start_mark.line + 1}); "
                    "a key may appear once per mapping (stage names are keys too)",
                    key_node.start_mark,
                )
            first[key] = key_node
        return super().construct_mapping(node, deep=deep)


# YAML 1.2 floats that YAML 1.1 reads as strings: an exponent with no dot (2e-5, 1E3) or with an unsigned one (1.0e5)
StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def load_yaml(text: str) -> Any:
    """Parse ``text`` with :class:`StrictLoader` (raises ``yaml.YAMLError``; duplicates are ``MarkedYAMLError``)."""
    return yaml.load(text, Loader=StrictLoader)  # noqa: S506 - a SafeLoader subclass
