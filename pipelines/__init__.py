"""pipelines — CLI, model zoo, datasets, Ray inference and the demo (the only package that imports torch)."""
