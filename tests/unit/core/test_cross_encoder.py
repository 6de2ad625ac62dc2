"""core.cross_encoder: a truncated cross-encoder keeps its shape through save and load."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("peft")


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
    ids = torch.tensor([[101, 2000, 102, 3000, 102]])
    feeds = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}
    model.eval()
    with torch.inference_mode():
        torch.testing.assert_close(loaded(**feeds), model(**feeds), atol=1e-5, rtol=0)


def test_an_adapter_without_a_shape_file_keeps_every_layer(tmp_path):
    from core.cross_encoder import SHAPE_FILE, CrossEncoder

    CrossEncoder.from_base().save_adapter(tmp_path)
    (tmp_path / SHAPE_FILE).unlink()  # as adapters released before the file existed
    assert len(CrossEncoder.from_adapter(tmp_path).transformer.encoder.layer) == 6
