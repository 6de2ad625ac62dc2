"""Exporting the bi-encoder (all-MiniLM-L6-v2) to ONNX, with mean pooling and L2 normalization in the graph."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from core.bi_encoder import mean_pooled_encoder
from core.specs import BI_ENCODER, ModelSpec

from .errors import ExportError, ParityError
from .validate import Parity, check_parity

# Texts the parity check runs, batched together so padding is exercised, in the languages shoppers type.
PARITY_TEXTS = [
    "cordless drill",
    "Kestrel 20V Cordless Drill/Driver Kit with 2 Batteries and Charger, 1/2 in. chuck",
    "手机推荐",
    "bluetooth headphnes",
    "BEHR Premium Textured DeckOver 1-gal. #SC-141 Tugboat Wood and Concrete Coating " * 4,
    "x",
]


def tokenize(model_dir: Path, texts: list[str], max_tokens: int) -> dict[str, np.ndarray]:
    """Tokenize with the same fast tokenizer file the orchestrator uses."""
    from tokenizers import Tokenizer  # noqa: PLC0415

    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=max_tokens)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    encodings = tokenizer.encode_batch(texts)
    return {
        "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
    }


def torch_reference(model_dir: Path, texts: list[str], spec: ModelSpec = BI_ENCODER) -> dict[str, np.ndarray]:
    """What PyTorch computes for the texts: the reference every served copy is checked against."""
    import torch  # noqa: PLC0415

    module = mean_pooled_encoder(model_dir)
    feeds = tokenize(model_dir, texts, spec.sequence_lengths[2])
    with torch.inference_mode():
        output = module(*(torch.from_numpy(feeds[name]) for name in spec.input_names))
    return {spec.output_names[0]: output.numpy()}


def check_io(onnx_file: Path, spec: ModelSpec) -> None:
    """Raise ExportError unless the file's inputs and outputs carry the spec's names and dtypes, in order."""
    import onnx  # noqa: PLC0415
    from onnx.helper import tensor_dtype_to_np_dtype  # noqa: PLC0415

    graph = onnx.load(str(onnx_file), load_external_data=False).graph
    found = [(v.name, str(tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type))) for v in (*graph.input, *graph.output)]
    expected = [(t.name, t.dtype) for t in (*spec.inputs, *spec.outputs)]
    if found != expected:
        raise ExportError(f"{onnx_file.name}: inputs and outputs {found} differ from the spec's {expected}")


def trace_to_onnx(module, sample: dict[str, np.ndarray], spec: ModelSpec, out_file: Path) -> None:
    """Trace `module` on `sample` into `out_file` with the spec's names and dynamic axes, then check the file.

    Raises ExportError (and deletes the file) when the graph is invalid or its tensors differ from the spec.
    """
    import onnx  # noqa: PLC0415
    import torch  # noqa: PLC0415

    out_file.parent.mkdir(parents=True, exist_ok=True)
    # The tracer warns about Python-level shape checks inside transformers; the parity checks that follow,
    # on other batch sizes and sequence lengths than the traced sample, are what prove the graph is general.
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", UserWarning)
        # The TorchScript exporter (dynamo=False) is chosen: it names dynamic axes as the spec does.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            module,
            tuple(torch.from_numpy(sample[name]) for name in spec.input_names),
            str(out_file),
            input_names=spec.input_names,
            output_names=spec.output_names,
            dynamic_axes=spec.dynamic_axes(),
            opset_version=spec.onnx_opset,
            dynamo=False,
        )
    try:
        onnx.checker.check_model(str(out_file))
        check_io(out_file, spec)
    except Exception:
        out_file.unlink()
        raise


def export_bi_encoder(model_dir: Path, out_file: Path, spec: ModelSpec = BI_ENCODER) -> list[Parity]:
    """Export to `out_file` and check it against PyTorch; raise ParityError (and delete the file) on mismatch."""
    import onnxruntime as ort  # noqa: PLC0415

    module = mean_pooled_encoder(model_dir)
    trace_to_onnx(module, tokenize(model_dir, PARITY_TEXTS[:2], spec.sequence_lengths[2]), spec, out_file)

    session = ort.InferenceSession(str(out_file), providers=["CPUExecutionProvider"])
    results = []
    # A padded batch of six (other shapes than the traced sample), and a single short text as queries arrive.
    for texts in (PARITY_TEXTS, PARITY_TEXTS[2:3]):
        feeds = tokenize(model_dir, texts, spec.sequence_lengths[2])
        reference = torch_reference(model_dir, texts, spec)
        exported = dict(zip(spec.output_names, session.run(spec.output_names, feeds)))
        try:
            results += check_parity(reference, exported, spec.atol["fp32"])
        except ParityError:
            out_file.unlink()
            raise
    return results
