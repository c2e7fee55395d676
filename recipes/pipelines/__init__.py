"""Multi-stage pipelines built from the recipes: the bake-off and recordings -> published voice."""
