"""The MiniLM bi-encoder as a PyTorch module: what `shoprank export` traces to ONNX, and the zero-shot baseline
training reports measure against."""

from __future__ import annotations

from pathlib import Path


def mean_pooled_encoder(model_dir: Path):
    """Transformer -> mean over unmasked tokens -> L2 normalization (sentence-transformers' pipeline), in eval
    mode; forward(input_ids, attention_mask) -> [batch, hidden]."""
    import torch  # noqa: PLC0415
    from transformers import AutoModel  # noqa: PLC0415

    class MeanPooledEncoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.transformer = AutoModel.from_pretrained(str(model_dir), local_files_only=True)

        def forward(self, input_ids, attention_mask):
            hidden = self.transformer(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    return MeanPooledEncoder().eval()
