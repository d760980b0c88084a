"""Fashion-MNIST classifier study: Hydra configs, Lightning training, MLflow tracking."""
