"""core.cross_encoder: a truncated cross-encoder keeps its shape through save and load."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("peft")


def assert_same_scores(loaded, model) -> None:
    """The reloaded cross-encoder scores a pair as the one that was saved."""
    import torch

    ids = torch.tensor([[101, 2000, 102, 3000, 102]])
    feeds = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}
    model.eval()
    with torch.inference_mode():
        torch.testing.assert_close(loaded(**feeds), model(**feeds), atol=1e-5, rtol=0)


def test_a_cross_encoder_of_fewer_layers_reloads_with_them(tmp_path):
    import torch

    from core.cross_encoder import SHAPE_FILE, CrossEncoder

    torch.manual_seed(0)
    model = CrossEncoder.from_base(layers=2)
    assert len(model.transformer.base_model.model.encoder.layer) == 2
    model.save_adapter(tmp_path)
    assert json.loads((tmp_path / SHAPE_FILE).read_text()) == {"layers": 2}

    loaded = CrossEncoder.from_adapter(tmp_path)
    assert len(loaded.transformer.encoder.layer) == 2
    assert_same_scores(loaded, model)


def test_an_adapter_without_a_shape_file_keeps_every_layer(tmp_path):
    from core.cross_encoder import SHAPE_FILE, CrossEncoder

    CrossEncoder.from_base().save_adapter(tmp_path)
    (tmp_path / SHAPE_FILE).unlink()  # as adapters released before the file existed
    assert len(CrossEncoder.from_adapter(tmp_path).transformer.encoder.layer) == 6


def test_a_fully_fine_tuned_cross_encoder_saves_its_weights_and_reloads_them(tmp_path):
    import torch

    from core.cross_encoder import ADAPTER_CONFIG, CrossEncoder, is_full, is_release

    torch.manual_seed(0)
    model = CrossEncoder.from_base(layers=2, full=True)
    assert model.full and all(parameter.requires_grad for parameter in model.parameters())
    with torch.no_grad():  # a trained weight the base model lacks must come back from the release
        model.transformer.encoder.layer[1].output.dense.bias.add_(0.5)
    model.save_adapter(tmp_path)
    assert is_full(tmp_path) and is_release(tmp_path) and not (tmp_path / ADAPTER_CONFIG).exists()

    loaded = CrossEncoder.from_adapter(tmp_path)
    assert len(loaded.transformer.encoder.layer) == 2
    assert_same_scores(loaded, model)


def test_a_folder_without_weights_or_head_is_no_release(tmp_path):
    from core.cross_encoder import HEAD_FILE, is_release

    assert not is_release(tmp_path)
    (tmp_path / HEAD_FILE).write_bytes(b"")
    assert not is_release(tmp_path)
