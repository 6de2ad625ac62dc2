"""Parity checks: an exported model must reproduce PyTorch's outputs within the spec's tolerance."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from core.specs import ModelSpec

from .errors import ParityError


@dataclass(frozen=True)
class Parity:
    output: str
    max_abs_diff: float
    atol: float


def check_parity(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray], atol: float) -> list[Parity]:
    """Compare every output; raise ParityError naming the output and its largest difference."""
    results = []
    for name, expected in reference.items():
        if name not in candidate:
            raise ParityError(f"output {name!r} is missing from the exported model")
        actual = candidate[name]
        if actual.shape != expected.shape:
            raise ParityError(f"output {name!r} has shape {actual.shape}, PyTorch gives {expected.shape}")
        diff = float(np.max(np.abs(actual.astype(np.float64) - expected.astype(np.float64)))) if expected.size else 0.0
        if not np.isfinite(diff) or diff > atol:
            raise ParityError(f"output {name!r} differs from PyTorch by up to {diff:.3g} (tolerance {atol:.3g})")
        results.append(Parity(name, diff, atol))
    return results


def log_parity(spec: ModelSpec, parity: list[Parity], log: Callable[[str], None], reference: str = "PyTorch") -> None:
    """One log line per output checked against `reference`."""
    for item in parity:
        log(f"{spec.name}: parity with {reference}, output {item.output}: max |diff| {item.max_abs_diff:.2e} "
            f"<= {item.atol:.0e}")
