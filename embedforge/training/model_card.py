"""The model card (``README.md``) saved with every trained model, in the form the Hugging Face Hub reads.

YAML metadata (``base_model`` as a Hub id when the base is a known preset, ``license``, ``language``,
``datasets``, ``tags``, ``model-index`` with the evaluation results in MTEB's convention), a usage
snippet, the evaluation table, per-stage data and losses, the prompts, framework versions, the
citations of the papers whose techniques the recipe used, and the resolved recipe.

Nothing machine-specific is written: absolute paths become paths relative to the recipe's project
folder (or ``…/last/parts``); numbers are rounded.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

# ISO 639-3 (task.json) -> ISO 639-1 (Hub metadata) for the languages with a two-letter code we meet
_ISO_639_1 = {
    "eng": "en", "cmn": "zh", "zho": "zh", "yue": "zh", "jpn": "ja", "kor": "ko", "fra": "fr", "deu": "de",
    "spa": "es", "por": "pt", "ita": "it", "nld": "nl", "rus": "ru", "ara": "ar", "hin": "hi", "tha": "th",
    "vie": "vi", "ind": "id", "msa": "ms", "zsm": "ms", "tgl": "tl", "fil": "tl", "mya": "my", "khm": "km",
    "lao": "lo", "pol": "pl", "tur": "tr", "ukr": "uk", "swe": "sv", "dan": "da", "fin": "fi", "nob": "no",
}  # fmt: skip

CITATIONS: dict[str, str] = {
    "sentence-transformers": """@inproceedings{reimers-2019-sentence-bert,
  title = {Sentence-BERT: Sentence Embeddings using Siamese BERT-Networks},
  author = {Reimers, Nils and Gurevych, Iryna},
  booktitle = {Proceedings of EMNLP-IJCNLP},
  year = {2019},
  url = {https://arxiv.org/abs/1908.10084}
}""",
    "infonce": """@article{oord2018representation,
  title = {Representation Learning with Contrastive Predictive Coding},
  author = {van den Oord, Aaron and Li, Yazhe and Vinyals, Oriol},
  journal = {arXiv preprint arXiv:1807.03748},
  year = {2018}
}""",
    "kalm-v2": """@article{zhao2025kalmv2,
  title = {KaLM-Embedding-V2: Superior Training Techniques and Data Inspire A Versatile Embedding Model},
  author = {Zhao, Xinping and Hu, Xinshuo and Shan, Zifei and others},
  journal = {arXiv preprint arXiv:2506.20923},
  year = {2025}
}""",
    "focal": """@inproceedings{lin2017focal,
  title = {Focal Loss for Dense Object Detection},
  author = {Lin, Tsung-Yi and Goyal, Priya and Girshick, Ross and He, Kaiming and Doll{\\'a}r, Piotr},
  booktitle = {ICCV},
  year = {2017}
}""",
    "seed1.5": """@misc{seed2025embedding,
  title = {Seed1.5-Embedding},
  author = {{ByteDance Seed}},
  year = {2025},
  note = {Technical report / blog, May 2025}
}""",
    "cosent": """@misc{su2022cosent,
  title = {CoSENT: A more efficient sentence vector scheme than Sentence-BERT},
  author = {Su, Jianlin},
  year = {2022},
  url = {https://kexue.fm/archives/8847}
}""",
    "matryoshka": """@inproceedings{kusupati2022matryoshka,
  title = {Matryoshka Representation Learning},
  author = {Kusupati, Aditya and Bhatt, Gantavya and Rege, Aniket and others},
  booktitle = {NeurIPS},
  year = {2022},
  url = {https://arxiv.org/abs/2205.13147}
}""",
    "gradcache": """@inproceedings{gao2021scaling,
  title = {Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup},
  author = {Gao, Luyu and Zhang, Yunyi and Han, Jiawei and Callan, Jamie},
  booktitle = {RepL4NLP Workshop},
  year = {2021},
  url = {https://arxiv.org/abs/2101.06983}
}""",
    "sea": """@misc{sea2026embedding,
  title = {SEA-Embedding: Open and Reproducible Text Embeddings for Southeast Asia},
  year = {2026}
}""",
    "lora": """@inproceedings{hu2022lora,
  title = {LoRA: Low-Rank Adaptation of Large Language Models},
  author = {Hu, Edward J. and Shen, Yelong and Wallis, Phillip and others},
  booktitle = {ICLR},
  year = {2022},
  url = {https://arxiv.org/abs/2106.09685}
}""",
    "mteb": """@inproceedings{muennighoff2023mteb,
  title = {MTEB: Massive Text Embedding Benchmark},
  author = {Muennighoff, Niklas and Tazi, Nouamane and Magne, Lo{\\"i}c and Reimers, Nils},
  booktitle = {EACL},
  year = {2023},
  url = {https://arxiv.org/abs/2210.07316}
}""",
}


def techniques_used(resolved_config: Mapping[str, Any], evaluated: bool = False) -> list[str]:
    """Keys of :data:`CITATIONS` for the techniques a resolved recipe uses (in citation order)."""
    used = ["sentence-transformers"]
    model = resolved_config.get("model") or {}
    for stage in (resolved_config.get("stages") or {}).values():
        if not isinstance(stage, Mapping) or stage.get("type", "train") != "train":
            continue
        loss = stage.get("loss") or {}
        specs = [loss, *(stage.get("loss_overrides") or {}).values()]
        names = {spec.get("name", "infonce") for spec in specs}
        kinds = {d.get("loss") or ("cosent" if d.get("kind") == "sts" else "infonce") for d in stage["datasets"]}
        if names & {"infonce", "cached_infonce", "mnrl"} and "infonce" in kinds:
            used.append("infonce")
        if any(spec.get("gamma") for spec in specs) or any(spec.get(k) for spec in specs for k in _MIXING):
            used.append("kalm-v2")
        if any(spec.get("gamma") for spec in specs):
            used.append("focal")
        if any(spec.get("false_negative_margin") is not None for spec in specs):
            used.append("seed1.5")
        if "cosent" in kinds:
            used.append("cosent")
        if stage.get("matryoshka"):
            used.append("matryoshka")
        if stage.get("gradcache_mini_batch") or "cached_infonce" in names:
            used.append("gradcache")
        if "sdm" in names or stage.get("teacher"):
            used.append("sea")
    if model.get("lora"):
        used.append("lora")
    if evaluated:
        used.append("mteb")
    return list(dict.fromkeys(used))


_MIXING = ("mix_pairwise", "mix_listwise")


def hub_base_model(base: str) -> str | None:
    """The Hub id of ``base``: a preset's ``hub_id``, the ``base_model`` of a local model's card, else None."""
    from embedforge.models.presets import get_preset

    preset = get_preset(base)
    if preset is not None:
        return preset.hub_id
    readme = Path(base) / "README.md"
    if readme.is_file():
        metadata = read_card_metadata(readme.read_text(encoding="utf-8"))
        value = metadata.get("base_model")
        return value if isinstance(value, str) else None
    if "/" in base and not os.path.isabs(base) and not Path(base).exists():
        return base  # a Hub id the user allowed (HF_HUB_OFFLINE=0)
    return None


def read_card_metadata(text: str) -> dict[str, Any]:
    """The YAML front matter of a model card (``{}`` when there is none)."""
    if not text.startswith("---\n"):
        return {}
    end = text.find("\n---", 4)
    if end < 0:
        return {}
    data = yaml.safe_load(text[4:end])
    return data if isinstance(data, dict) else {}


def portable(value: Any, root: str | os.PathLike[str] | None) -> Any:
    """``value`` with absolute paths made relative to ``root`` (else shortened to ``…/parent/name``)."""
    if isinstance(value, Mapping):
        return {k: portable(v, root) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [portable(v, root) for v in value]
    if isinstance(value, str) and os.path.isabs(value):
        if root is not None:
            try:
                return Path(value).resolve().relative_to(Path(root).resolve()).as_posix()
            except ValueError:
                pass
        parts = Path(value).parts
        return "…/" + "/".join(parts[-2:]) if len(parts) > 2 else Path(value).name
    return value


def _round(value: Any, digits: int = 4) -> Any:
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, Mapping):
        return {k: _round(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [_round(v, digits) for v in value]
    return value


def model_index(name: str, records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``model-index`` metadata in MTEB's convention (scores x100, 2 decimals; the Hub dataset id of MTEB tasks)."""
    results = []
    full = max((r["dim"] for r in records), default=0)
    by_task: dict[str, list[Mapping[str, Any]]] = {}
    for record in records:
        by_task.setdefault(record["task"], []).append(record)
    for task, rows in by_task.items():
        first = rows[0]
        hub = _mteb_dataset(task) if first.get("same_data_as_mteb") else None
        dataset: dict[str, Any] = {"name": f"MTEB {task}" if hub else task, "type": hub["path"] if hub else task}
        if hub and hub.get("revision"):
            dataset["revision"] = hub["revision"]
        dataset.update({"config": first.get("subset") or "default", "split": first.get("split", "test")})
        metrics = []
        for row in sorted(rows, key=lambda r: -r["dim"]):
            metric = {"type": row.get("main_metric", "main_score"), "value": round(100 * row["main_score"], 2)}
            if row["dim"] != full:
                metric["name"] = f"{metric['type']} (dim {row['dim']})"
            metrics.append(metric)
        results.append({"task": {"type": first["type"]}, "dataset": dataset, "metrics": metrics})
    return [{"name": name, "results": results}] if results else []


def _mteb_dataset(task: str) -> dict[str, Any] | None:
    from embedforge.evaluation.mteb_tasks import _registered_class

    registered = _registered_class(task)
    return dict(registered.metadata.dataset) if registered is not None else None


def framework_versions() -> dict[str, str]:
    """Versions of the libraries that trained and evaluated the model."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": platform.python_version()}
    for package in ("embedforge", "sentence-transformers", "transformers", "torch", "mteb", "datasets", "tokenizers"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            continue
    return versions


def _language_codes(records: Iterable[Mapping[str, Any]], fallback: Sequence[str] = ()) -> list[str]:
    codes = [str(c).split("-")[0] for r in records for c in r.get("languages", [])] or list(fallback)
    return list(dict.fromkeys(_ISO_639_1.get(code, code) for code in codes))


def model_card(
    *,
    title: str,
    base_model: str,
    description: str = "",
    stages: list[dict[str, Any]] | None = None,
    resolved_config: dict[str, Any] | None = None,
    eval_table: str | None = None,
    prompts: dict[str, str] | None = None,
    results: Sequence[Mapping[str, Any]] = (),
    root: str | os.PathLike[str] | None = None,
    license: str | None = None,
    language: Sequence[str] = (),
) -> str:
    """Markdown model card with Hub metadata.

    Args:
        title: model name.
        base_model: the model training started from (preset name, Hub id or folder).
        description: free text.
        stages: one dict per stage: ``name``, ``type``, ``datasets`` (DatasetInfo dicts), ``losses``,
            ``steps``, ``train_seconds``, ``final_loss``, ``global_batch``, ``best``.
        resolved_config: the recipe after defaults and overrides (dumped as YAML, paths made portable).
        eval_table: a Markdown results table.
        prompts: the prompts saved with the model.
        results: this model's ``results.json`` records (``model-index`` metadata).
        root: the project folder absolute paths are made relative to.
        license: the model's license (default: the base preset's).
        language: ISO 639-1 codes (default: from the evaluated tasks, else the base preset's).
    """
    from embedforge.models.presets import get_preset

    preset = get_preset(base_model)
    hub_id = hub_base_model(base_model)
    base_label = hub_id or portable(base_model, root)
    stages = stages or []
    config = portable(resolved_config or {}, root)
    languages = list(language) or _language_codes(results, preset.languages if preset else ())
    tags = ["sentence-transformers", "sentence-similarity", "feature-extraction", "embedforge"]
    for stage in stages:
        for loss in (stage.get("losses") or {}).values():
            tags.append(f"loss:{str(loss).split('(')[0]}")
        if stage.get("matryoshka") or any("Matryoshka" in str(v) for v in (stage.get("losses") or {}).values()):
            tags.append("matryoshka")
    metadata: dict[str, Any] = {
        "library_name": "sentence-transformers",
        "pipeline_tag": "sentence-similarity",
    }
    if languages:
        metadata["language"] = languages
    if license or (preset and preset.license):
        metadata["license"] = license or preset.license
    if hub_id:
        metadata["base_model"] = hub_id
    datasets = list(dict.fromkeys(d["name"] for s in stages for d in s.get("datasets") or []))
    if datasets:
        metadata["datasets"] = datasets
    metadata["tags"] = list(dict.fromkeys(tags))
    index = model_index(title, results)
    if index:
        metadata["model-index"] = index

    lines = [
        "---",
        yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True).rstrip(),
        "---",
        "",
        f"# {title}",
        "",
    ]
    lines += [description or f"A text embedding model trained from `{base_label}` with embedforge.", ""]
    lines += [f"Base model: `{base_label}`.", "", "## Usage", "", "```python"]
    lines += [
        "from sentence_transformers import SentenceTransformer",
        "",
        'model = SentenceTransformer("path/to/this/folder")  # or its Hub id once uploaded',
        'queries = model.encode_query(["how do I install a package?"])  # applies the saved query prompt',
        'documents = model.encode_document(["Use apt-get install NAME on Debian."])',
        "print(model.similarity(queries, documents))",
        "```",
        "",
        "Matryoshka: `SentenceTransformer(path, truncate_dim=128)` keeps the first 128 dimensions."
        if "matryoshka" in metadata["tags"]
        else "",
    ]
    if eval_table:
        lines += ["## Evaluation (MTEB protocol, embedforge)", "", "Main scores x100.", "", eval_table.rstrip(), ""]
    for stage in stages:
        lines += _stage_section(stage, root)
    if prompts:
        lines += ["## Prompts", "", "| key | prompt |", "|---|---|"]
        lines += [f"| `{k}` | `{v!r}` |" for k, v in prompts.items()]
        lines.append("")
    lines += ["## Framework versions", ""]
    lines += [f"- {name}: {value}" for name, value in framework_versions().items()]
    lines.append("")
    cited = techniques_used(resolved_config or {}, evaluated=bool(results or eval_table))
    lines += ["## Citation", "", "Papers whose techniques this model was trained or evaluated with:", ""]
    for key in cited:
        lines += ["```bibtex", CITATIONS[key], "```", ""]
    if resolved_config:
        dumped = yaml.safe_dump(config, sort_keys=False, allow_unicode=True).rstrip()
        lines += ["## Resolved recipe", "", "```yaml", dumped, "```", ""]
    return "\n".join(lines)


def _stage_section(stage: Mapping[str, Any], root: str | os.PathLike[str] | None) -> list[str]:
    lines = [f"## Stage `{stage['name']}` ({stage.get('type', 'train')})", ""]
    facts = {k: stage[k] for k in ("steps", "global_batch", "train_seconds", "final_loss", "dtype") if k in stage}
    if facts:
        lines += [", ".join(f"{k}: {_round(v)}" for k, v in facts.items()), ""]
    best = stage.get("best")
    if best:
        used = " (saved as this stage's model)" if stage.get("final_is_best") else ""
        score = f"{100 * best['value']:.2f}"
        lines += [f"Evaluated during training; best `{best['metric']}` = {score} at step {best['step']}{used}.", ""]
    if stage.get("datasets"):
        lines += [
            "| dataset | kind | rows | loss | in-batch negatives | hard negatives | sampling weight | source |",
            "|---|---|---:|---|---|---:|---:|---|",
        ]
        for info in stage["datasets"]:
            lines.append(
                f"| {info['name']} | {info['kind']} | {info['rows']} | {info['loss']} | "
                f"{'yes' if info['in_batch_negatives'] else 'no'} | {info['num_negatives']} | "
                f"{info['weight']:.3f} | `{portable(info['path'], root)}` |"
            )
        lines.append("")
    if stage.get("losses"):
        lines += ["Losses:", ""]
        lines += [f"- `{name}`: {_round_text(desc)}" for name, desc in stage["losses"].items()]
        lines.append("")
    return lines


def _round_text(text: str) -> str:
    """Round long floats inside a loss description (``temperature=0.05000000074505806`` -> ``0.05``)."""
    import re

    return re.sub(r"\d+\.\d{5,}", lambda m: f"{float(m.group()):.4g}", str(text))


CARD_INPUTS = "card.json"  # beside a stage's final/: the model_card() arguments, to re-render with results


def write_model_card(
    model_dir: str | os.PathLike[str],
    inputs: Mapping[str, Any],
    *,
    results: Sequence[Mapping[str, Any]] = (),
    eval_table: str | None = None,
) -> Path:
    """(Re)write ``model_dir/README.md`` from :func:`model_card` ``inputs`` plus evaluation ``results``.

    The inputs are kept beside the model folder (``card.json``) so that a later evaluation can add its
    results to the card.
    """
    from embedforge.utils.io import atomic_write_json, atomic_write_text

    model_dir = Path(model_dir)
    atomic_write_json(model_dir.parent / CARD_INPUTS, dict(inputs))
    path = model_dir / "README.md"
    atomic_write_text(path, model_card(**inputs, results=results, eval_table=eval_table))
    return path


def add_results_to_card(
    model_dir: str | os.PathLike[str], results: Sequence[Mapping[str, Any]], eval_table: str | None = None
) -> Path | None:
    """Re-render the card of a model trained by embedforge with evaluation results (None: no card inputs)."""
    from embedforge.utils.io import read_json

    inputs = Path(model_dir).parent / CARD_INPUTS
    if not inputs.is_file():
        return None
    return write_model_card(model_dir, read_json(inputs), results=results, eval_table=eval_table)
