"""Clustering: ``<split>.jsonl`` rows ``{"text", "label"}``; main score v_measure.

Scored by MTEB's current clustering task (``AbsTaskClustering``): mini-batch k-means with as many
clusters as labels, repeated ``n_clusters`` (10) times on bootstrap samples of at most
``max_documents_per_cluster`` documents, every document embedded (as MTEB's text clustering tasks do).
"""

from __future__ import annotations

from datasets import Dataset, DatasetDict

from embedforge.errors import DataError
from embedforge.evaluation.spec import TaskSpec
from embedforge.evaluation.types import TaskType, read_rows, register_task_type


@register_task_type
class Clustering(TaskType):
    name = "Clustering"
    abstask = "mteb.abstasks.clustering:AbsTaskClustering"
    default_main_score = "v_measure"
    files = "<eval_split>.jsonl with text, label"

    def protocol(self, spec: TaskSpec, data: DatasetDict) -> dict[str, None]:
        # MTEB's text clustering tasks embed every document (their data is already subsampled)
        return {"max_fraction_of_documents_to_embed": None}

    def load(self, spec: TaskSpec) -> DatasetDict:
        path = spec.file(f"{spec.eval_split}.jsonl")
        rows = read_rows(path, ("text",), ("label",))
        labels = [row["label"] for row in rows]
        if len({str(label) for label in labels}) < 2:
            raise DataError(f"every row has the label {labels[0]!r}; clustering needs at least two labels", path)
        # MTEB's v_measure works on label values; keep them as strings so int/str mixes cannot split a label
        data = {"sentences": [row["text"] for row in rows], "labels": [str(label) for label in labels]}
        return DatasetDict({spec.eval_split: Dataset.from_dict(data)})
