"""The model card (``README.md``) saved with every trained model: data, losses, config, results."""

from __future__ import annotations

from typing import Any

import yaml


def model_card(
    *,
    title: str,
    base_model: str,
    description: str = "",
    stages: list[dict[str, Any]] | None = None,
    resolved_config: dict[str, Any] | None = None,
    eval_table: str | None = None,
    prompts: dict[str, str] | None = None,
) -> str:
    """Markdown model card.

    Args:
        title: model name.
        base_model: the model training started from.
        description: free text.
        stages: one dict per stage: ``name``, ``type``, ``datasets`` (DatasetInfo dicts), ``losses``,
            ``steps``, ``seconds``, ``final_loss``.
        resolved_config: the recipe after defaults and overrides (dumped as YAML).
        eval_table: a Markdown results table.
        prompts: the prompts saved with the model.
    """
    lines = [
        "---",
        "library_name: sentence-transformers",
        "pipeline_tag: sentence-similarity",
        "tags: [sentence-transformers, feature-extraction, embedforge]",
        f"base_model: {base_model}",
        "---",
        "",
        f"# {title}",
        "",
        description or f"A text embedding model trained from `{base_model}` with embedforge.",
        "",
        "```python",
        "from sentence_transformers import SentenceTransformer",
        'model = SentenceTransformer("path/to/this/folder")',
        'embeddings = model.encode_query(["how do I install a package?"])  # applies the saved query prompt',
        "```",
        "",
    ]
    for stage in stages or []:
        lines += [f"## Stage `{stage['name']}` ({stage.get('type', 'train')})", ""]
        facts = {k: stage[k] for k in ("steps", "seconds", "final_loss", "global_batch") if k in stage}
        if facts:
            lines += [", ".join(f"{k}: {v}" for k, v in facts.items()), ""]
        if stage.get("datasets"):
            lines += [
                "| dataset | kind | rows | loss | in-batch negatives | hard negatives | sampling weight | source |",
                "|---|---|---:|---|---|---:|---:|---|",
            ]
            for info in stage["datasets"]:
                lines.append(
                    f"| {info['name']} | {info['kind']} | {info['rows']} | {info['loss']} | "
                    f"{'yes' if info['in_batch_negatives'] else 'no'} | {info['num_negatives']} | "
                    f"{info['weight']:.3f} | `{info['path']}` |"
                )
            lines.append("")
        if stage.get("losses"):
            lines += ["Losses:", ""]
            lines += [f"- `{name}`: {desc}" for name, desc in stage["losses"].items()]
            lines.append("")
    if prompts:
        lines += ["## Prompts", "", "| key | prompt |", "|---|---|"]
        lines += [f"| `{k}` | `{v!r}` |" for k, v in prompts.items()]
        lines.append("")
    if eval_table:
        lines += ["## Evaluation (MTEB protocol, embedforge)", "", eval_table, ""]
    if resolved_config:
        lines += [
            "## Resolved recipe",
            "",
            "```yaml",
            yaml.safe_dump(resolved_config, sort_keys=False).rstrip(),
            "```",
            "",
        ]
    return "\n".join(lines)
