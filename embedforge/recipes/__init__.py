"""Recipes: YAML -> stages (train, eval, ...) run in order with resumable outputs.

from embedforge.recipes import load_recipe, run_recipe
result = run_recipe(load_recipe("recipes/quickstart.yaml", ["stages.finetune.loss.gamma=0.5"]))
"""

from embedforge.recipes.context import StageContext, StageResult
from embedforge.recipes.loader import apply_override, load_recipe, recipe_from_dict
from embedforge.recipes.runner import RecipeResult, run_recipe
from embedforge.recipes.schema import STAGE_TYPES, Recipe, StageType, register_stage_type

__all__ = [
    "STAGE_TYPES",
    "Recipe",
    "RecipeResult",
    "StageContext",
    "StageResult",
    "StageType",
    "apply_override",
    "load_recipe",
    "recipe_from_dict",
    "register_stage_type",
    "run_recipe",
]
