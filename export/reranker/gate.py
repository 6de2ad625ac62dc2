"""The accuracy gate: each precision of the reranker ranks held-out judged queries, and its mean nDCG@10 may fall
at most `tolerance` below FP32's (scores are not compared one by one: quantization moves every score a little)."""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from core.specs import RERANKER, ModelSpec

from ..errors import ExportError
from .pairs import pair_encoder
from .session import ort_session

REPO_ROOT = Path(__file__).resolve().parents[2]
GATE_TOLERANCE = 0.003

# ---------------------------------------------------------------------------------------------------- gate data


@dataclass(frozen=True)
class GateData:
    """The judged queries a gate ranks: a judgments file, its catalog, and which split of its queries."""

    judgments: Path
    catalog: Path
    split: str | None  # None: every query
    # False for the demo fallback: 33 queries cannot resolve a 0.003 tolerance (one swapped pair moves a
    # query's nDCG by more), so a shortfall there is reported and the export goes on.
    binding: bool = True

    def describe(self) -> str:
        which = f"{self.split} split" if self.split else "all queries"
        return f"{self.judgments} ({which}) with {self.catalog}" + ("" if self.binding else ", not binding")


def default_gate_data(repo_root: Path = REPO_ROOT) -> GateData:
    """Home Depot's judgments (dev split) beside the repository when present, else the demo data (all queries,
    not binding: the release's binding gate on Home Depot's dev split is recorded in models/reranker/manifest.json)."""
    home_depot = repo_root.parent / "shared" / "data" / "home-depot-product-search-relevance"
    if (home_depot / "judgments.csv").is_file() and (home_depot / "catalog.csv").is_file():
        return GateData(home_depot / "judgments.csv", home_depot / "catalog.csv", "dev")
    demo = repo_root / "data" / "demo"
    return GateData(demo / "judgments.csv", demo / "catalog.csv", None, binding=False)


def gate_lists(judgments: Path, catalog: Path, split: str | None = "dev", seed: int = 0) -> list:
    """The QueryLists of one split of the judgments (dev by default; None: all), as training builds them, with
    the queries spelling-corrected as the service corrects them."""
    from core.catalog import load_catalog  # noqa: PLC0415
    from core.judgments import load_judgments  # noqa: PLC0415
    from core.query_lists import build_lists, correct_queries  # noqa: PLC0415
    from core.splits import select  # noqa: PLC0415

    products = load_catalog(catalog)
    lists = build_lists(products, select(load_judgments(judgments), split), seed)
    return correct_queries({"gate": lists}, products)["gate"]


# --------------------------------------------------------------------------------------------------------- gate


@dataclass(frozen=True)
class GateResult:
    """One precision's mean nDCG@10 on the gate queries, against FP32's."""

    precision: str
    ndcg: float | None  # None: not measured (skipped, or it could not run)
    reference: float  # FP32's nDCG@10
    tolerance: float
    passed: bool
    skipped: bool = False
    seconds: float | None = None  # scoring every gate query, one session
    note: str = ""

    def line(self) -> str:
        if self.precision == "fp32":
            return f"fp32 (the reference): nDCG@10 {self.ndcg:.4f}; scored in {self.seconds:.1f}s"
        if self.skipped:
            return f"{self.precision}: NOT GATED ({self.note})"
        if self.ndcg is None:
            return f"{self.precision}: FAILED, {self.note}"
        verdict = "passes" if self.passed else "FAILS"
        return (f"{self.precision}: nDCG@10 {self.ndcg:.4f} vs FP32's {self.reference:.4f} "
                f"({self.ndcg - self.reference:+.4f}, tolerance {self.tolerance}) {verdict}; scored in {self.seconds:.1f}s")


def score_onnx(session, encoder, lists: list, spec: ModelSpec = RERANKER) -> list[np.ndarray]:
    """An ONNX Runtime session's scores for every QueryList, as the cpu target computes them: one query's
    pairs a run, in the Python backend's length groups (dynamic int8's activation ranges depend on both)."""
    from ..python_backend.ort_model import run_by_length  # noqa: PLC0415

    def run(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return session.run(spec.output_names, feeds)

    scores = []
    for item in lists:
        feeds = encoder([item.query] * len(item.texts), list(item.texts))
        scores.append(run_by_length(run, feeds, spec.length_group_rows)[0].reshape(-1))
    return scores


def measure_ndcg(onnx_file: Path, lists: list, spec: ModelSpec = RERANKER, threads: int = 0) -> tuple[float, float]:
    """(mean nDCG@10, seconds) of one ONNX file on the QueryLists, run with ONNX Runtime on CPU."""
    from core.query_lists import mean_ndcg_over_queries  # noqa: PLC0415

    session = ort_session(onnx_file, threads)
    started = time.perf_counter()
    scores = score_onnx(session, pair_encoder(spec), lists, spec)
    return mean_ndcg_over_queries(lists, scores), time.perf_counter() - started


def accuracy_gate(files: dict[str, Path], lists: list, tolerance: float = GATE_TOLERANCE, skip: Collection[str] = (),
                  spec: ModelSpec = RERANKER, threads: int = 0, log: Callable[[str], None] = print,
                  binding: bool = True) -> dict[str, GateResult]:
    """Rank the QueryLists with every file (ONNX Runtime, CPU); raise ExportError if any precision falls more
    than `tolerance` below FP32's nDCG@10 or cannot run. Precisions in `skip` are not run, and say so.
    Not `binding`: a shortfall is logged as such and nothing is raised (a precision that cannot run still raises)."""
    if "fp32" not in files or "fp32" in skip:
        raise ValueError("the gate needs the fp32 file: it is the reference")
    try:
        reference, seconds = measure_ndcg(files["fp32"], lists, spec, threads)
    except Exception as error:  # noqa: BLE001 - ONNX Runtime's exceptions share no base class
        raise ExportError(f"the fp32 reranker cannot run on ONNX Runtime's CPU provider: {error}") from None
    results = {"fp32": GateResult("fp32", reference, reference, tolerance, True, seconds=seconds)}
    for precision, path in files.items():
        if precision == "fp32":
            continue
        if precision in skip:
            results[precision] = GateResult(precision, None, reference, tolerance, False, skipped=True,
                                            note="skipped on request: its ranking was not checked")
            continue
        try:
            ndcg, seconds = measure_ndcg(path, lists, spec, threads)
        except Exception as error:  # noqa: BLE001 - e.g. NOT_IMPLEMENTED: no CPU kernel for a float16 op
            results[precision] = GateResult(
                precision, None, reference, tolerance, False,
                note=f"cannot run on ONNX Runtime's CPU provider ({str(error).strip()[:300]}); "
                     f"skip it explicitly (--skip-precision {precision}) to export it ungated",
            )
            continue
        # A hair of slack so that a precision scoring exactly FP32's nDCG passes at tolerance 0.
        passed = ndcg >= reference - tolerance - 1e-12
        results[precision] = GateResult(precision, ndcg, reference, tolerance, passed, seconds=seconds)
    for result in results.values():
        log(f"{spec.name} gate, {len(lists)} queries: {result.line()}")
    failed = [result for result in results.values() if not result.passed and not result.skipped]
    if failed and not binding and all(result.ndcg is not None for result in failed):
        log(f"{spec.name} gate NOT BINDING on {len(lists)} queries (too few to resolve the tolerance): exported anyway")
        return results
    if failed:
        raise ExportError(f"{spec.name} accuracy gate: " + "; ".join(result.line() for result in failed))
    return results

