"""benchmarks/reranker_gpu.py's pure parts: batch parsing, statistics, version folders, TensorRT profiles,
calibration ranges, the ceiling comparison and the merged JSON object. Nothing here needs a GPU."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from benchmarks import reranker_gpu as gpu


def test_parse_batches():
    assert gpu.parse_batches("32,256,2048") == (32, 256, 2048)
    assert gpu.parse_batches("2") == (2,)
    for bad in ("", "0", "32,-1", "x", "3.5"):
        with pytest.raises(argparse.ArgumentTypeError):
            gpu.parse_batches(bad)


def test_summarize_reports_median_p95_and_pairs_per_second():
    result = gpu.summarize(256, [2.0, 1.0, 3.0, 10.0, 2.0])
    assert result["batch"] == 256
    assert result["iterations"] == 5
    assert result["median_ms"] == 2.0
    assert result["p95_ms"] == pytest.approx(8.6)  # between 3.0 and 10.0, linear interpolation
    assert result["mean_ms"] == 3.6
    assert result["pairs_per_s"] == 128_000.0  # 256 pairs in 2 ms


def test_newest_version_file_takes_the_highest_integer_version_holding_the_file(tmp_path):
    assert gpu.newest_version_file(tmp_path / "missing", "model.onnx") is None
    for version in ("1", "2", "10"):
        (tmp_path / version).mkdir()
    (tmp_path / "1" / "model.onnx").write_text("one")
    (tmp_path / "2" / "model.onnx").write_text("two")
    (tmp_path / ".11.partial").mkdir()  # an export still being written
    (tmp_path / ".11.partial" / "model.onnx").write_text("partial")
    assert gpu.newest_version_file(tmp_path, "model.onnx") == tmp_path / "2" / "model.onnx"  # 10 has no file
    (tmp_path / "10" / "model.onnx").write_text("ten")
    assert gpu.newest_version_file(tmp_path, "model.onnx") == tmp_path / "10" / "model.onnx"  # 10 > 2, not "10" < "2"


def test_trt_profile_covers_one_pair_to_the_largest_batch():
    shapes = gpu.trt_profile_shapes(["input_ids", "attention_mask"], (2048, 32, 256), 64)
    assert shapes == {
        "trt_profile_min_shapes": "input_ids:1x64,attention_mask:1x64",
        "trt_profile_opt_shapes": "input_ids:256x64,attention_mask:256x64",
        "trt_profile_max_shapes": "input_ids:2048x64,attention_mask:2048x64",
    }


def test_bounded_ranges_drops_the_attention_masks_stand_ins_for_minus_infinity():
    ranges = {"hidden": (-12.5, 30.0), "mask": (-3.4e38, 0.0), "scores": (-3.4e38, 9.6), "small": (0.0, 1.0)}
    assert gpu.bounded_ranges(ranges) == {"hidden": (-12.5, 30.0), "small": (0.0, 1.0)}


def test_pad_to_pads_with_zeros_or_cuts_to_exactly_the_length():
    feeds = {"input_ids": np.array([[101, 7, 102], [101, 102, 0]]), "attention_mask": np.array([[1, 1, 1], [1, 1, 0]])}
    padded = gpu.pad_to(feeds, 5)
    assert padded["input_ids"].tolist() == [[101, 7, 102, 0, 0], [101, 102, 0, 0, 0]]
    assert padded["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 0, 0, 0]]
    assert gpu.pad_to(feeds, 2)["input_ids"].tolist() == [[101, 7], [101, 102]]


def test_adapter_layers(tmp_path):
    assert gpu.adapter_layers(tmp_path) == 6  # no cross_encoder.json: every layer of MiniLM-L6
    (tmp_path / "cross_encoder.json").write_text('{"layers": 3}\n')
    assert gpu.adapter_layers(tmp_path) == 3


def _result(variant: str, batch: int, pairs_per_s: float, scores=None, weights="reranker", inputs="demo") -> dict:
    return {"variant": variant, "batch": batch, "pairs_per_s": pairs_per_s, "median_ms": batch * 1000 / pairs_per_s,
            "p95_ms": batch * 1000 / pairs_per_s, "scores_head": scores, "weights": weights, "inputs": inputs}


def test_ceiling_comparison_at_the_issues_batches():
    rows = gpu.ceiling_comparison([_result("torch-compile-fp16-l6", 256, 55_500.0), _result("x", 32, 22_069.0),
                                   _result("y", 64, 1.0)])
    assert [(row["batch"], row["share_of_ceiling"]) for row in rows] == [(256, 0.5), (32, 2.0)]  # 32 / 2.9 ms
    assert rows[0]["ceiling_pairs_per_s"] == 111_000.0


def test_score_differences_against_onnx_runtime_cuda_fp16_with_the_same_weights_and_inputs():
    results = [
        _result("torch-eager-fp16-l3", 32, 1.0, [0.5, 0.25]),
        _result("ort-cuda-fp16", 32, 1.0, [0.5, 0.5]),
        _result("ort-tensorrt-int8", 32, 1.0, [0.25, 0.5]),
        _result("torch-compile-fp16-l6", 32, 1.0, [9.0, 9.0], weights="random"),
        _result("ort-tensorrt-fp16", 32, 1.0, [0.0, 0.0], inputs="random token ids"),
    ]
    gpu.score_differences(results)
    assert results[0]["max_abs_diff_vs"] == {"variant": "ort-cuda-fp16", "max_abs_diff": 0.25}
    assert results[2]["max_abs_diff_vs"] == {"variant": "ort-cuda-fp16", "max_abs_diff": 0.25}
    assert "max_abs_diff_vs" not in results[1]  # the reference itself
    assert "max_abs_diff_vs" not in results[3]  # other weights
    assert "max_abs_diff_vs" not in results[4]  # other inputs


def test_merge_parts_gathers_probes_results_and_reasons():
    parts = [
        {"step": "probe", "probe": {"python": "/usr/bin/python3", "caps": ["torch-cuda"]}},
        {"step": "ort", "results": [], "not_measured": [{"variant": "ort-cuda-fp16", "reason": "no CUDA EP"}]},
        {"step": "torch", "results": [_result("torch-compile-fp16-l6", 2048, 162_500.0)], "notes": ["n"]},
    ]
    steps = [{"step": "ort-cuda-fp16", "status": "not-measured"}, {"step": "torch-l6", "status": "ok"}]
    merged = gpu.merge_parts(parts, steps, {"name": "NVIDIA H200"})
    assert merged["gpu"] == {"name": "NVIDIA H200"}
    assert merged["interpreters"] == [{"python": "/usr/bin/python3", "caps": ["torch-cuda"]}]
    assert merged["steps"] == steps
    assert [r["variant"] for r in merged["results"]] == ["torch-compile-fp16-l6"]
    assert merged["not_measured"] == [{"variant": "ort-cuda-fp16", "reason": "no CUDA EP"}]
    assert merged["ceiling"]["comparison"][0]["share_of_ceiling"] == 1.0
    assert merged["notes"] == ["n"]
    assert "torch-compile-fp16-l6 | " in gpu.format_table(merged["results"])


def test_part_order_puts_probes_first_then_steps_as_they_ran(tmp_path):
    names = ["ort-cuda-fp16.json", "probe-1.json", "stray.json", "torch-l6.json", "torch-served.json"]
    ordered = gpu.part_order([tmp_path / name for name in names], ["ort-cuda-fp16", "torch-served", "torch-l6"])
    assert [path.name for path in ordered] == ["probe-1.json", "ort-cuda-fp16.json", "torch-served.json",
                                               "torch-l6.json", "stray.json"]


def test_read_steps(tmp_path):
    (tmp_path / "steps.tsv").write_text("ort-cuda-fp16\tok\t0\t12\t/usr/bin/python3\t\n"
                                        "export-fp32\tskipped\t\t0\t\tno TensorRT EP\n")
    assert gpu.read_steps(tmp_path / "steps.tsv") == [
        {"step": "ort-cuda-fp16", "status": "ok", "rc": "0", "seconds": "12", "python": "/usr/bin/python3", "note": ""},
        {"step": "export-fp32", "status": "skipped", "rc": "", "seconds": "0", "python": "", "note": "no TensorRT EP"},
    ]
    assert gpu.read_steps(tmp_path / "missing.tsv") == []
