"""The reranker's reference export: the adapter merged into the base weights, traced to ONNX in fp32 and
checked against PyTorch."""

from __future__ import annotations

from pathlib import Path

from core.specs import RERANKER, ModelSpec

from ..errors import ExportError, ParityError
from ..onnx import trace_to_onnx
from ..validate import Parity, check_parity
from .pairs import PARITY_PAIRS, encode_pairs, pair_encoder
from .session import ort_session


def export_reranker_fp32(adapter_dir: Path, out_file: Path, spec: ModelSpec = RERANKER) -> list[Parity]:
    """Export the merged reranker to `out_file` and check it against PyTorch; on mismatch delete it and raise."""
    import torch  # noqa: PLC0415

    from core.cross_encoder import CrossEncoder  # noqa: PLC0415

    model = CrossEncoder.from_adapter(Path(adapter_dir), attention="eager")  # fusable by fuse_for_cpu
    encoder = pair_encoder(spec)
    trace_to_onnx(model, encode_pairs(encoder, PARITY_PAIRS[:2]), spec, out_file)
    try:
        session = ort_session(out_file)
        results = []
        # A padded batch of six (other shapes than the traced sample), and a single pair.
        for pairs in (PARITY_PAIRS, PARITY_PAIRS[2:3]):
            feeds = encode_pairs(encoder, pairs)
            with torch.inference_mode():
                reference = model(*(torch.from_numpy(feeds[name]) for name in spec.input_names)).numpy()
            exported = dict(zip(spec.output_names, session.run(spec.output_names, feeds)))
            results += check_parity({spec.output_names[0]: reference}, exported, spec.atol["fp32"])
    except (ExportError, ParityError):
        out_file.unlink()
        raise
    return results
