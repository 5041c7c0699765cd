"""MTEB-faithful offline evaluation of embedding models on task directories.

from embedforge.evaluation import evaluate
report = evaluate("all-MiniLM-L6-v2", ["../shared/data/eval/STSBenchmark"], "runs/minilm", dims=[384, 128])
"""

from embedforge.evaluation.runner import EvalReport, LoadedTask, evaluate, load_task, load_tasks
from embedforge.evaluation.spec import TaskSpec, find_task_dirs, load_task_spec

__all__ = [
    "EvalReport",
    "LoadedTask",
    "TaskSpec",
    "evaluate",
    "find_task_dirs",
    "load_task",
    "load_task_spec",
    "load_tasks",
]
