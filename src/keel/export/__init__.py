"""Exports of a governed model version to other serving stacks (MLflow pyfunc, models from code)."""
