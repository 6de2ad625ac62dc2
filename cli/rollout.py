"""`shoprank rollout`: model version rollouts through a running service's admin API (orchestrator/rollout).

    shoprank rollout start reranker 2 --canary 10     load and warm version 2, then serve it to 10% of users
    shoprank rollout start reranker 2 --shadow 100    score every request with it too, serve the stable version
    shoprank rollout start reranker 2 --interleave 20 answer 20% of requests with both versions' rankings
                                                      interleaved; rolled back if shoppers prefer the stable one
    shoprank rollout shift reranker 50
    shoprank rollout promote reranker
    shoprank rollout rollback reranker --reason "..."
    shoprank rollout status [reranker] [--json]

The token is SHOPRANK_ADMIN_TOKEN, the service's own; the address is the service's admin port.
"""

from __future__ import annotations

import argparse
import math
import time

from core._proto.shoprank.v1 import admin_pb2

from .experiment import format_experiment
from .options import admin_call, admin_command, print_answer, print_answers

DEFAULT_CANARY = 10


def format_status(status: admin_pb2.RolloutStatus, history: int = 8) -> str:
    """A rollout status as a few lines of text."""
    if status.candidate_version:
        rollout = f"candidate {status.candidate_version} ({status.mode} {status.percent}%)"
    else:
        rollout = "no rollout in progress"
    lines = [f"{status.model}: stable {status.stable_version}, {rollout}; loaded: {', '.join(status.loaded_versions)}"
             + (" (pinned by the settings)" if status.pinned else "")]
    for window in status.windows:
        p99 = "-" if math.isnan(window.p99_ms) else f"{window.p99_ms:.0f} ms"
        lines.append(f"  version {window.version}: {window.requests} requests, {window.errors} errors, p99 {p99} "
                     "(guards' window)")
    if status.mode == "shadow":
        agreement = "-" if math.isnan(status.shadow_agreement) else f"{status.shadow_agreement:.3f}"
        lines.append(f"  shadow agreement (RBO of the top 10): {agreement} over {status.shadow_compared} rankings, "
                     f"{status.shadow_skipped} skipped (reranker busy)")
    if status.HasField("quality"):
        lines.append("  quality guard: " + format_experiment(status.quality).replace("\n", "\n  "))
    if status.candidate_manifest:
        lines.append("  candidate: " + ", ".join(f"{key} {value}" for key, value in status.candidate_manifest.items() if value))
    for event in list(status.history)[-history:]:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(event.time))
        lines.append(f"  {when} {event.action} {event.version}" + (f": {event.detail}" if event.detail else ""))
    return "\n".join(lines)


def cmd_start(args: argparse.Namespace) -> None:
    shadow, interleave = args.shadow is not None, args.interleave is not None
    percent = (args.shadow if shadow else args.interleave if interleave
               else DEFAULT_CANARY if args.canary is None else args.canary)
    request = admin_pb2.StartRolloutRequest(model=args.model, version=args.version, percent=percent, shadow=shadow,
                                            interleave=interleave)
    print_answer(args, admin_call(args, "StartRollout", request), format_status)


def cmd_shift(args: argparse.Namespace) -> None:
    request = admin_pb2.ShiftRolloutRequest(model=args.model, percent=args.percent)
    print_answer(args, admin_call(args, "ShiftRollout", request), format_status)


def cmd_promote(args: argparse.Namespace) -> None:
    print_answer(args, admin_call(args, "PromoteRollout", admin_pb2.ModelRequest(model=args.model)), format_status)


def cmd_rollback(args: argparse.Namespace) -> None:
    request = admin_pb2.ModelRequest(model=args.model, reason=args.reason)
    print_answer(args, admin_call(args, "RollbackRollout", request), format_status)


def cmd_status(args: argparse.Namespace) -> None:
    result = admin_call(args, "GetRolloutStatus", admin_pb2.ModelRequest(model=args.model or ""))
    print_answers(args, result.models, format_status)


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Register this module's commands."""
    rollout = commands.add_parser("rollout", help="roll a new model version out on a running service (admin API)")
    actions = rollout.add_subparsers(dest="action", required=True)
    sub = admin_command(actions, "start", "load and warm a version, then give it a share of the requests", cmd_start)
    sub.add_argument("model")
    sub.add_argument("version")
    share = sub.add_mutually_exclusive_group()
    # No default here: argparse would not see "--canary 10 --shadow 50" as a conflict (10 is the default object).
    share.add_argument("--canary", type=int, metavar="PERCENT",
                       help="serve this share of users (sticky by user id) with the new version (default 10)")
    share.add_argument("--shadow", type=int, metavar="PERCENT",
                       help="score this share of requests with the new version too, but serve the stable one")
    share.add_argument("--interleave", type=int, metavar="PERCENT",
                       help="answer this share of requests with the stable and new versions' rankings interleaved; "
                            "the quality guard rolls the new version back when shoppers' clicks prefer the stable one")
    sub = admin_command(actions, "shift", "change the candidate's share", cmd_shift)
    sub.add_argument("model")
    sub.add_argument("percent", type=int)
    sub = admin_command(actions, "promote", "serve every request with the candidate; unload the old version once drained", cmd_promote)
    sub.add_argument("model")
    sub = admin_command(actions, "rollback", "stop serving the candidate; unload it once drained", cmd_rollback)
    sub.add_argument("model")
    sub.add_argument("--reason", default="", help="recorded in the history")
    sub = admin_command(actions, "status", "every model's versions, rollout, window figures and history", cmd_status)
    sub.add_argument("model", nargs="?")
