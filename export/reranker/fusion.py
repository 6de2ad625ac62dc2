"""The fp32 graph fused for ONNX Runtime's CPU kernels: what dynamic quantization makes the cpu target's file of."""

from __future__ import annotations

from pathlib import Path

from core.specs import RERANKER, ModelSpec

from ..errors import ExportError
from ..onnx import check_io
from ..validate import check_parity
from .pairs import PARITY_PAIRS, encode_pairs, pair_encoder
from .session import ort_session


def fuse_for_cpu(fp32_file: Path, out_file: Path, spec: ModelSpec = RERANKER) -> dict[str, int]:
    """ONNX Runtime's transformer optimizer: embeddings + LayerNorm, each layer's attention and bias + GELU
    become single fused CPU kernels (and QAttention once quantized), each LayerNorm one node. Residual +
    LayerNorm stays two nodes where the spec disables SkipLayerNormFusion (its CPU kernel is the slower).
    Checked against the unfused file on the parity pairs; returns how many nodes of each fused kind it made."""
    import onnx  # noqa: PLC0415
    from onnxruntime.transformers.fusion_options import FusionOptions  # noqa: PLC0415
    from onnxruntime.transformers.optimizer import optimize_model  # noqa: PLC0415
    from transformers import AutoConfig  # noqa: PLC0415

    from core.base_model import base_model_dir  # noqa: PLC0415

    config = AutoConfig.from_pretrained(str(base_model_dir()), local_files_only=True)
    fusions = FusionOptions("bert")
    fusions.enable_skip_layer_norm = "SkipLayerNormFusion" not in spec.cpu_disabled_optimizers
    optimized = optimize_model(str(fp32_file), model_type="bert", num_heads=config.num_attention_heads,
                               hidden_size=config.hidden_size, opt_level=1, use_gpu=False,
                               optimization_options=fusions)
    fused = {name: count for name, count in optimized.get_fused_operator_statistics().items() if count}
    norms = fused.get("SkipLayerNormalization", 0) + fused.get("LayerNormalization", 0)
    layers = norms // 2  # two residual LayerNorms a layer
    if not layers or fused.get("Attention", 0) != layers:
        raise ExportError(f"{spec.name}: the optimizer fused {fused.get('Attention', 0)} of {layers} attention layers; "
                          "was the model exported with eager attention?")
    optimized.save_model_to_file(str(out_file))
    onnx.checker.check_model(str(out_file))
    check_io(out_file, spec)
    feeds = encode_pairs(pair_encoder(spec), PARITY_PAIRS)
    reference = ort_session(fp32_file).run(spec.output_names, feeds)
    exported = ort_session(out_file).run(spec.output_names, feeds)
    check_parity(dict(zip(spec.output_names, reference)), dict(zip(spec.output_names, exported)), spec.atol["fp32"])
    return fused
