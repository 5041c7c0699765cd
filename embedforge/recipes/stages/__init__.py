"""Recipe stage types (each module registers one in ``embedforge.recipes.schema.STAGE_TYPES``)."""
