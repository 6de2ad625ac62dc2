"""Training and evaluation. `core.metrics`, `core.judgments` and `training.evaluate` need no torch."""
