"""DatasetConfig: YAML -> dataclass, unknown keys / wrong types named, kind-dependent defaults."""

from __future__ import annotations

import pytest
import yaml

from embedforge.data.config import DatasetConfig, load_dataset_configs
from embedforge.errors import ConfigError

ENTRY = """
name: debian
path: /data/pairs.jsonl.gz
kind: pairs
columns: {anchor: summary, positive: description}
instruction: Given a package summary, retrieve its description
weight: 2
max_rows: 3000
"""


def test_yaml_entry_becomes_dataclass():
    config = DatasetConfig.from_dict(yaml.safe_load(ENTRY))
    assert config.name == "debian"
    assert config.columns == {"anchor": "summary", "positive": "description"}
    assert config.weight == 2.0 and isinstance(config.weight, float)  # YAML int accepted for a float field
    assert config.max_rows == 3000
    assert config.format is None and config.split == "train" and config.on_empty == "error"


def test_unknown_key_is_named_with_suggestion():
    data = yaml.safe_load(ENTRY) | {"colums": {}}
    with pytest.raises(ConfigError, match=r"datasets\[3\]\.colums: unknown key\. Did you mean 'columns'\?"):
        DatasetConfig.from_dict(data, where="datasets[3]")


def test_wrong_type_names_key_and_expected_type():
    data = yaml.safe_load(ENTRY) | {"max_rows": "ten"}
    with pytest.raises(ConfigError, match=r"dataset\.max_rows: expected int or null, got str 'ten'"):
        DatasetConfig.from_dict(data)
    data = yaml.safe_load(ENTRY) | {"symmetric": "yes"}
    with pytest.raises(ConfigError, match=r"symmetric: expected bool or null"):
        DatasetConfig.from_dict(data)


def test_missing_required_key():
    data = yaml.safe_load(ENTRY)
    del data["kind"]
    with pytest.raises(ConfigError, match="missing required key 'kind'"):
        DatasetConfig.from_dict(data)


def test_invalid_choice_suggests_the_closest():
    with pytest.raises(ConfigError, match="kind 'pair' is not valid. Did you mean 'pairs'"):
        DatasetConfig(name="x", path="p", kind="pair")
    with pytest.raises(ConfigError, match="on_empty 'ignore' is not valid"):
        DatasetConfig(name="x", path="p", kind="pairs", on_empty="ignore")


def test_cosent_needs_sts():
    with pytest.raises(ConfigError, match="loss 'cosent' needs scored pairs"):
        DatasetConfig(name="x", path="p", kind="pairs", loss="cosent")


def test_bad_values_rejected():
    with pytest.raises(ConfigError, match="sts_threshold"):
        DatasetConfig(name="x", path="p", kind="sts", sts_threshold=4.0)
    with pytest.raises(ConfigError, match="score_range"):
        DatasetConfig(name="x", path="p", kind="sts", score_range=[5, 0])
    with pytest.raises(ConfigError, match="template"):
        DatasetConfig(name="x", path="p", kind="sts", template="{text} {task}")
    with pytest.raises(ConfigError, match="label_map.yes"):
        DatasetConfig(name="x", path="p", kind="nli", label_map={"yes": "entails-ish"})
    with pytest.raises(ConfigError, match="reserved"):
        DatasetConfig(name="dataset_name", path="p", kind="pairs")


@pytest.mark.parametrize(
    ("kind", "symmetric", "loss", "in_batch", "negatives"),
    [
        ("retrieval", False, "infonce", True, None),
        ("pairs", False, "infonce", True, 0),
        ("triplets", False, "infonce", True, None),
        ("nli", True, "infonce", True, 1),
        ("sts", True, "cosent", False, 0),
        ("classification", True, "infonce", True, 1),  # in-batch: same-class candidates are masked by the labels
        ("clustering", True, "infonce", True, 1),
    ],
)
def test_kind_defaults(kind, symmetric, loss, in_batch, negatives):
    resolved = DatasetConfig(name="x", path="p", kind=kind).resolved()
    assert (resolved.symmetric, resolved.loss, resolved.in_batch_negatives, resolved.num_negatives) == (
        symmetric,
        loss,
        in_batch,
        negatives,
    )


def test_sts_with_infonce_uses_in_batch_negatives_and_overrides_win():
    assert DatasetConfig(name="x", path="p", kind="sts", loss="infonce").uses_in_batch_negatives
    config = DatasetConfig(name="x", path="p", kind="retrieval", in_batch_negatives=False, symmetric=True)
    assert not config.uses_in_batch_negatives and config.is_symmetric


def test_load_dataset_configs_list_and_mapping_forms():
    entries = yaml.safe_load(
        """
        - {name: a, path: a.jsonl, kind: pairs}
        - {name: b, path: b.jsonl, kind: sts}
        """
    )
    assert [c.name for c in load_dataset_configs(entries)] == ["a", "b"]
    mapping = {"a": {"path": "a.jsonl", "kind": "pairs"}, "b": {"path": "b.jsonl", "kind": "nli"}}
    assert [c.kind for c in load_dataset_configs(mapping)] == ["pairs", "nli"]
    with pytest.raises(ConfigError, match="named 'a'"):
        load_dataset_configs(entries + [{"name": "a", "path": "c", "kind": "pairs"}])
    with pytest.raises(ConfigError, match=r"datasets\[0\]\.knd: unknown key"):
        load_dataset_configs([{"name": "a", "path": "a", "knd": "pairs"}])
