"""A position-based click model: how simulated shoppers click a shown list, from the products' judged gains.

    P(click at rank r) = examination(r) * attractiveness(g)
    examination(r)     = (1 / r) ^ eta                                        (Joachims, Swaminathan and Schnabel 2017)
    attractiveness(g)  = epsilon + (1 - epsilon) (2^g - 1) / (2^G - 1)        G: the judgments' highest gain

epsilon is the chance of a click on an examined product judged irrelevant (noise clicks). `factor` is one shopper's
activity (training/shoppers.py): their click chances are the model's times it, at most 1 (1: the model's shopper).
The interleaving simulation (benchmarks/interleaving_sim.py) and the clicking shoppers of the load tests
(loadtest/locustfile.py) draw their clicks from this one model.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

ETA = 1.0
EPSILON = 0.1


@dataclass(frozen=True)
class ClickModel:
    """Position-based clicks: P(click at rank r) = (1/r)^eta * (epsilon + (1 - epsilon) (2^g - 1) / (2^G - 1))."""

    eta: float = ETA
    epsilon: float = EPSILON
    max_gain: float = 2.0
    factor: float = 1.0

    def click_probabilities(self, gains: Sequence[float]) -> np.ndarray:
        """The click probability of each shown position, given the shown products' gains in order."""
        gains = np.clip(np.asarray(gains, dtype=np.float64), 0.0, self.max_gain)
        examination = (1.0 / np.arange(1, len(gains) + 1)) ** self.eta
        attractiveness = self.epsilon + (1.0 - self.epsilon) * np.expm1(gains * math.log(2.0)) / math.expm1(
            self.max_gain * math.log(2.0))
        return np.minimum(examination * attractiveness * self.factor, 1.0)

    def clicks(self, gains: Sequence[float], rng: random.Random) -> list[int]:
        """One shopper's clicks on a shown list: the 1-based positions clicked."""
        return [position for position, chance in enumerate(self.click_probabilities(gains).tolist(), 1)
                if rng.random() < chance]
