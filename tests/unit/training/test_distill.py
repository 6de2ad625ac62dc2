"""training.train's distillation: the teacher's scores mixed into the train targets, and which teachers are taken."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("peft")

DEMO = Path(__file__).resolve().parents[3] / "data" / "demo"


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    """A real (untrained, one-layer) fully fine-tuned cross-encoder saved as a release, with a pointwise manifest."""
    import torch

    from core.cross_encoder import CrossEncoder

    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("teacher")
    CrossEncoder.from_base(layers=1, full=True).save_adapter(directory)
    (directory / "manifest.json").write_text(json.dumps({"hyperparameters": {"loss": "pointwise"}}))
    return directory


def lists():
    from core.query_lists import QueryList

    return [QueryList("cordless drill", ("a", "b", "c"), ("cordless drill 18v", "garden hose", "drill bits"),
                      np.array([3.0, 1.0, 2.0], dtype=np.float32)),
            QueryList("hose", ("d",), ("garden hose 50 ft",), np.array([2.5], dtype=np.float32))]


def test_distill_mixes_each_gain_with_the_teachers_score(teacher_dir):
    from training.train import TrainConfig, distill, load_teacher, score_lists

    teacher = load_teacher(teacher_dir)
    encoder = TrainConfig().pair_encoder()
    scores = score_lists(teacher, encoder, lists())
    mixed = distill(lists(), teacher, encoder, 0.25)

    for before, after, score in zip(lists(), mixed, scores):
        assert (after.query, after.product_ids, after.texts) == (before.query, before.product_ids, before.texts)
        np.testing.assert_allclose(after.gains, 0.75 * before.gains + 0.25 * score, rtol=1e-6)
        assert after.gains.dtype == before.gains.dtype
    np.testing.assert_allclose(distill(lists(), teacher, encoder, 1.0)[0].gains, scores[0], rtol=1e-6)


def test_a_teacher_not_trained_pointwise_is_refused(teacher_dir, tmp_path):
    from training.train import load_teacher

    for name in ("config.json", "model.safetensors", "head.safetensors", "cross_encoder.json"):
        (tmp_path / name).write_bytes((teacher_dir / name).read_bytes())
    (tmp_path / "manifest.json").write_text(json.dumps({"hyperparameters": {"loss": "pairwise"}}))
    with pytest.raises(ValueError, match="pointwise"):
        load_teacher(tmp_path)
    (tmp_path / "manifest.json").unlink()
    with pytest.raises(ValueError, match="pointwise"):
        load_teacher(tmp_path)


def test_a_folder_without_a_cross_encoder_is_no_teacher(tmp_path):
    from training.train import load_teacher

    with pytest.raises(ValueError, match="no trained cross-encoder"):
        load_teacher(tmp_path)


@pytest.mark.parametrize("weight, teacher", [(0.5, None), (0.0, "somewhere"), (1.5, "somewhere")])
def test_distillation_needs_a_teacher_and_a_weight_in_range_before_any_file_is_read(tmp_path, weight, teacher):
    from training.train import TrainConfig, train_reranker

    out = tmp_path / "out"
    with pytest.raises(ValueError, match="teacher"):
        train_reranker(TrainConfig(teacher_weight=weight), tmp_path / "missing.csv", tmp_path / "missing.csv", out,
                       teacher=tmp_path / teacher if teacher else None)
    assert not out.exists()


def test_the_train_command_refuses_a_bad_teacher_in_one_line_before_writing_anything(teacher_dir, tmp_path, capsys):
    from cli.main import main

    pairwise = tmp_path / "pairwise"
    pairwise.mkdir()
    for name in ("config.json", "model.safetensors", "head.safetensors", "cross_encoder.json"):
        (pairwise / name).write_bytes((teacher_dir / name).read_bytes())
    (pairwise / "manifest.json").write_text(json.dumps({"hyperparameters": {"loss": "pairwise"}}))
    out = tmp_path / "out"
    common = ["train", "reranker", "--catalog", str(DEMO / "catalog.csv"), "--judgments", str(DEMO / "judgments.csv"),
              "--out", str(out)]
    for extra, message in ((["--teacher", str(pairwise)], "pointwise loss"),
                           (["--teacher", str(tmp_path / "missing")], "no trained cross-encoder"),
                           (["--teacher", str(teacher_dir), "--teacher-weight", "0"], "--teacher-weight")):
        assert main(common + extra) == 2
        assert message in capsys.readouterr().err
    assert not out.exists()
