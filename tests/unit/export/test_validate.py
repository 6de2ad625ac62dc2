"""export.validate.check_parity: exported outputs against the reference."""

from __future__ import annotations

import numpy as np
import pytest

from export.validate import Parity, ParityError, check_parity


def test_identical_outputs_pass_with_zero_diff():
    reference = {"embedding": np.arange(6, dtype=np.float32).reshape(2, 3)}
    assert check_parity(reference, {"embedding": reference["embedding"].copy()}, atol=1e-4) == [
        Parity("embedding", 0.0, 1e-4)
    ]


def test_reports_max_abs_diff_within_tolerance():
    reference = {"a": np.array([1.0, 2.0, 3.0]), "b": np.array([[0.0]])}
    candidate = {"a": np.array([1.0, 2.00005, 2.9999]), "b": np.array([[0.0]])}
    results = check_parity(reference, candidate, atol=1e-3)
    assert [r.output for r in results] == ["a", "b"]
    assert results[0].max_abs_diff == pytest.approx(1e-4)
    assert results[0].atol == 1e-3
    assert results[1].max_abs_diff == 0.0


def test_diff_exactly_at_tolerance_passes():
    reference = {"x": np.array([0.0, 0.5])}
    candidate = {"x": np.array([0.25, 0.5])}
    assert check_parity(reference, candidate, atol=0.25)[0].max_abs_diff == 0.25


def test_diff_above_tolerance_names_output_and_diff():
    reference = {"embedding": np.zeros((2, 4), dtype=np.float32)}
    candidate = {"embedding": np.full((2, 4), 0.01, dtype=np.float16)}
    with pytest.raises(ParityError) as error:
        check_parity(reference, candidate, atol=5e-3)
    message = str(error.value)
    assert "'embedding'" in message
    assert "0.01" in message
    assert "0.005" in message


def test_mixed_precision_compared_in_float64():
    reference = {"x": np.array([1.0], dtype=np.float32)}
    candidate = {"x": np.array([1.0], dtype=np.float16)}
    assert check_parity(reference, candidate, atol=0.0)[0].max_abs_diff == 0.0


def test_missing_output():
    with pytest.raises(ParityError, match="'embedding' is missing"):
        check_parity({"embedding": np.zeros(2)}, {"other": np.zeros(2)}, atol=1.0)


def test_shape_mismatch():
    with pytest.raises(ParityError, match=r"shape \(2, 3\).*\(3, 2\)"):
        check_parity({"x": np.zeros((3, 2))}, {"x": np.zeros((2, 3))}, atol=1.0)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_output_fails(bad):
    with pytest.raises(ParityError, match="'x'"):
        check_parity({"x": np.array([0.0, 1.0])}, {"x": np.array([0.0, bad])}, atol=1e9)


def test_nan_in_reference_fails():
    with pytest.raises(ParityError):
        check_parity({"x": np.array([np.nan])}, {"x": np.array([np.nan])}, atol=1.0)


def test_empty_outputs_pass():
    assert check_parity({"x": np.zeros((0, 384))}, {"x": np.zeros((0, 384))}, atol=0.0)[0].max_abs_diff == 0.0
    assert check_parity({}, {"x": np.zeros(1)}, atol=0.0) == []


def test_first_failing_output_stops_the_check():
    reference = {"a": np.zeros(1), "b": np.zeros(1)}
    with pytest.raises(ParityError, match="'a'"):
        check_parity(reference, {"a": np.ones(1), "b": np.ones(1)}, atol=0.1)
