"""export.repository: every export is a new version folder with its manifest; none is written over."""

from __future__ import annotations

import dataclasses
import json

import pytest

from core.model_repository import version_manifest, versions
from core.specs import BI_ENCODER
from export.encoders import _export_encoder, served_files
from export.repository import is_current, newest_version, next_version, write_model_version, write_version
from export.stamps import spec_stamp
from export.targets import ONNX_TARGETS
from export.triton_config import render


@pytest.fixture
def files(tmp_path):
    onnx_file, tokenizer = tmp_path / "model.onnx", tmp_path / "tokenizer.json"
    onnx_file.write_bytes(b"onnx v1")
    tokenizer.write_text("{}")
    return onnx_file, tokenizer


def export_once(root, files, stamp):
    version = next_version(root, BI_ENCODER, ONNX_TARGETS)
    for target in ONNX_TARGETS:
        write_model_version(root, target, BI_ENCODER, version, served_files(target, files[0]),
                            {"model": BI_ENCODER.name, "source": stamp}, render(BI_ENCODER, target), files[1])
    return version


def test_exports_add_versions_beside_the_old_ones(tmp_path, files):
    root = tmp_path / "repo"
    assert not is_current(root, BI_ENCODER, {"weights": "a"})
    assert export_once(root, files, {"weights": "a"}) == 1
    assert is_current(root, BI_ENCODER, {"weights": "a"})
    assert not is_current(root, BI_ENCODER, {"weights": "b"})

    files[0].write_bytes(b"onnx v2")
    assert export_once(root, files, {"weights": "b"}) == 2
    folder = root / "cpu" / BI_ENCODER.name
    assert versions(folder) == [1, 2]
    assert (folder / "1" / "model.onnx").read_bytes() == b"onnx v1"  # untouched
    assert (folder / "2" / "model.onnx").read_bytes() == b"onnx v2"
    assert version_manifest(folder, 2) == {"model": BI_ENCODER.name, "source": {"weights": "b"}, "version": "2"}
    assert is_current(root, BI_ENCODER, {"weights": "b"}) and not is_current(root, BI_ENCODER, {"weights": "a"})
    assert newest_version(root, BI_ENCODER, ONNX_TARGETS) == 2


def test_a_version_is_never_written_over(tmp_path, files):
    folder = tmp_path / "model"
    write_version(folder, 1, {"model.onnx": files[0]}, {"source": {}})
    with pytest.raises(FileExistsError, match="never written over"):
        write_version(folder, 1, {"model.onnx": files[0]}, {"source": {}})
    assert not list(folder.glob(".*partial"))


def test_a_version_folder_appears_whole_or_not_at_all(tmp_path, files):
    folder = tmp_path / "model"
    with pytest.raises(FileNotFoundError):
        write_version(folder, 1, {"model.onnx": files[0], "missing.bin": tmp_path / "nope"}, {"source": {}})
    assert versions(folder) == []  # only the hidden staging folder was written


def test_an_older_layout_reads_its_stamp_as_version_one(tmp_path):
    folder = tmp_path / "model"
    (folder / "1").mkdir(parents=True)
    (folder / "export.json").write_text(json.dumps({"source": {"weights": "a"}}))
    assert version_manifest(folder, 1) == {"source": {"weights": "a"}}
    assert version_manifest(folder, 2) is None


def test_the_spec_stamp_leaves_out_only_tritons_scheduling():
    rescheduled = dataclasses.replace(BI_ENCODER, preferred_batch_sizes=(4,), max_queue_delay_us=5,
                                      cpu_max_queue_delay_us=7)
    assert spec_stamp(rescheduled) == spec_stamp(BI_ENCODER)
    assert spec_stamp(dataclasses.replace(BI_ENCODER, onnx_opset=18)) != spec_stamp(BI_ENCODER)
    assert spec_stamp(dataclasses.replace(BI_ENCODER, max_batch_size=32)) != spec_stamp(BI_ENCODER)
    assert spec_stamp(dataclasses.replace(BI_ENCODER, length_group_rows=5)) != spec_stamp(BI_ENCODER)


def test_a_current_export_rewrites_a_stale_config_and_exports_nothing(tmp_path, files):
    root = tmp_path / "repo"
    stamp = {"spec": spec_stamp(BI_ENCODER)}
    export_once(root, files, stamp)
    stale = root / "cpu" / BI_ENCODER.name / "config.pbtxt"
    stale.write_text(render(dataclasses.replace(BI_ENCODER, cpu_max_queue_delay_us=2000), "cpu"))
    lines = []

    def export(onnx_file):
        raise AssertionError("a current model was exported again")

    _export_encoder(root, BI_ENCODER, stamp, False, lines.append, "source", "reference", export, files[1],
                    "tokenizer.json")
    assert stale.read_text() == render(BI_ENCODER, "cpu")
    assert (root / "gpu" / BI_ENCODER.name / "config.pbtxt").read_text() == render(BI_ENCODER, "gpu")
    assert versions(root / "cpu" / BI_ENCODER.name) == [1]
    assert any("rewrote" in line and "cpu" in line for line in lines)
    assert not any("rewrote" in line and "gpu" in line for line in lines)  # it was current
