"""Training data: configs, readers, converters by source kind, instructions, batch sampling, decontamination.

Public API (imported lazily: the samplers subclass sentence-transformers', whose import takes ~10 s on CPU)::

    from embedforge.data import (
        DatasetConfig, load_dataset_configs,                 # recipe entries (YAML -> dataclass)
        load_training_datasets,                               # configs -> (DatasetDict, TrainingDataInfo)
        read_dataset, detect_format,                          # jsonl / jsonl.gz / parquet / BEIR / save_to_disk
        trainer_prompts, model_prompts, format_prompt,        # instructions as sentence-transformers prompts
        LengthGroupedBatchSampler, WeightedMultiDatasetBatchSampler, multi_dataset_batch_sampler,
        EvalTextIndex, decontaminate_dataset,                 # decontamination against evaluation task dirs
    )
"""

from __future__ import annotations

from embedforge.utils.lazy import lazy_exports

# public name -> module that defines it
_EXPORTS = {
    "KINDS": "embedforge.data.config",
    "DatasetConfig": "embedforge.data.config",
    "load_dataset_configs": "embedforge.data.config",
    "CONVERTERS": "embedforge.data.converters",
    "REQUIRED_COLUMNS": "embedforge.data.converters",
    "Source": "embedforge.data.converters",
    "convert": "embedforge.data.converters",
    "EvalTextIndex": "embedforge.data.decontaminate",
    "decontaminate_dataset": "embedforge.data.decontaminate",
    "normalize_text": "embedforge.data.decontaminate",
    "DEFAULT_TASK_TYPE_INSTRUCTIONS": "embedforge.data.instructions",
    "DEFAULT_TEMPLATE": "embedforge.data.instructions",
    "dataset_prompts": "embedforge.data.instructions",
    "default_instruction": "embedforge.data.instructions",
    "format_prompt": "embedforge.data.instructions",
    "model_prompts": "embedforge.data.instructions",
    "task_types_from_dirs": "embedforge.data.instructions",
    "trainer_prompts": "embedforge.data.instructions",
    "DatasetInfo": "embedforge.data.loading",
    "TrainingDataInfo": "embedforge.data.loading",
    "load_training_datasets": "embedforge.data.loading",
    "detect_format": "embedforge.data.readers",
    "read_beir": "embedforge.data.readers",
    "read_dataset": "embedforge.data.readers",
    "read_disk": "embedforge.data.readers",
    "read_jsonl": "embedforge.data.readers",
    "read_parquet": "embedforge.data.readers",
    "LengthGroupedBatchSampler": "embedforge.data.sampler",
    "WeightedMultiDatasetBatchSampler": "embedforge.data.sampler",
    "batch_sampler": "embedforge.data.sampler",
    "multi_dataset_batch_sampler": "embedforge.data.sampler",
    "padding_fraction": "embedforge.data.sampler",
    "apportion": "embedforge.data.weights",
    "sampling_probabilities": "embedforge.data.weights",
}

__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
