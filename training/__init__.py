"""Training and evaluation. `training.metrics`, `training.data` and `training.evaluate` need no torch."""
