"""MLflow-backed model registry and pickle-free model artifacts."""
