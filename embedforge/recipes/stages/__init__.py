"""Recipe stage types; importing this package registers each in ``embedforge.recipes.schema.STAGE_TYPES``.

Stage modules import :mod:`embedforge.recipes.context` and :mod:`embedforge.recipes.schema` only (no runner, no
loader), and import their heavy dependencies inside ``run``.
"""

from embedforge.recipes.stages import evaluate, merge, mine, train

__all__ = ["evaluate", "merge", "mine", "train"]
