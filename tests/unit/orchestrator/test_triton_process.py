import pytest

from core.errors import ConfigError
from orchestrator.triton_process import LocalTriton, unexported_models


def _model(root, name: str, version_files: tuple[str, ...] = ()) -> None:
    folder = root / name
    folder.mkdir()
    (folder / "config.pbtxt").write_text(f'name: "{name}"\n')
    if version_files:
        (folder / "1").mkdir()
        for file in version_files:
            (folder / "1" / file).write_text("x")


def test_models_without_an_exported_version_are_named(tmp_path):
    _model(tmp_path, "bi_encoder", ("model.onnx",))
    _model(tmp_path, "reranker")  # a fresh checkout: the committed config only
    _model(tmp_path, "multilingual_encoder")
    (tmp_path / "multilingual_encoder" / "1").mkdir()  # an empty version folder counts as none
    assert unexported_models(tmp_path) == ["multilingual_encoder", "reranker"]


def test_starting_triton_before_export_says_what_to_run(tmp_path):
    _model(tmp_path, "bi_encoder")
    with pytest.raises(ConfigError, match=r"no exported version of bi_encoder .*run `shoprank export`"):
        LocalTriton(tmp_path).start()
