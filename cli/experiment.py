"""`shoprank experiment`: online experiments through a running service's admin API (orchestrator/experiments).

    shoprank experiment start cheap-vs-default --control no-cross-encoder --treatment default \
        --method interleave --share 0.2
    shoprank experiment status [NAME] [--json]
    shoprank experiment stop NAME

An arm is a way the service can rank: default, fused, no-cross-encoder, no-personalization, reranker=VERSION,
weights=NAME:WEIGHT+NAME:WEIGHT, or parts of these joined by commas. Shoppers judge the arms through the feedback
they send back with each answer's request id (FeedbackEvent.request_id and position). The decision is a sequential
test fixed before the start, valid however often `status` is looked at.

The token is SHOPRANK_ADMIN_TOKEN, the service's own; the address is the service's admin port.
"""

from __future__ import annotations

import argparse
import math
import time

from core._proto.shoprank.v1 import admin_pb2

from .options import admin_call, admin_command, print_answer, print_answers


def _interval(low: float, high: float) -> str:
    return "[-, -]" if math.isnan(low) or math.isnan(high) else f"[{low:.3f}, {high:.3f}]"


def format_experiment(status: admin_pb2.ExperimentStatus) -> str:
    """An experiment's status as a few lines of text."""
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(status.started))
    state = "running" if status.running else "stopped " + time.strftime("%Y-%m-%d %H:%M", time.localtime(status.stopped))
    lines = [f"{status.name}: {status.method}, treatment {status.treatment!r} against control {status.control!r}, "
             f"{status.share:.0%} of searches; started {when}, {state}",
             f"  decision: {status.decision} (sequential test: log likelihood ratio {status.log_ratio:.2f}, decides "
             f"at {status.threshold:.2f})",
             f"  answers {status.shown}; feedback joined {status.feedback_joined}, not joined {status.feedback_unjoined}"]
    if status.method == "interleave":
        clicked = status.wins + status.losses + status.ties
        share = "-" if math.isnan(status.treatment_share) else f"{status.treatment_share:.3f}"
        lines.append(f"  clicked queries {clicked}: treatment won {status.wins}, control won {status.losses}, tied "
                     f"{status.ties}")
        lines.append(f"  treatment's share of decisive queries {share} "
                     f"{_interval(status.treatment_share_low, status.treatment_share_high)}; delta {status.delta:+.3f} "
                     f"{_interval(status.delta_low, status.delta_high)} (95%)")
    for arm in status.arms:
        lines.append(f"  {arm.arm} ({arm.spec}): {arm.searches} searches, clicks in the top 10 per search "
                     f"{arm.clicks_per_search:.3f} {_interval(arm.clicks_per_search_low, arm.clicks_per_search_high)}, "
                     f"purchases per search {arm.purchases_per_search:.3f} "
                     f"{_interval(arm.purchases_per_search_low, arm.purchases_per_search_high)} (95%)")
    return "\n".join(lines)


def cmd_start(args: argparse.Namespace) -> None:
    request = admin_pb2.StartExperimentRequest(name=args.name, control=args.control, treatment=args.treatment,
                                               method=args.method, share=args.share)
    print_answer(args, admin_call(args, "StartExperiment", request), format_experiment)


def cmd_stop(args: argparse.Namespace) -> None:
    print_answer(args, admin_call(args, "StopExperiment", admin_pb2.ExperimentRequest(name=args.name)),
                 format_experiment)


def cmd_status(args: argparse.Namespace) -> None:
    result = admin_call(args, "GetExperimentStatus", admin_pb2.ExperimentRequest(name=args.name or ""))
    print_answers(args, result.experiments, format_experiment, empty="no experiments")


def _share(text: str) -> float:
    try:
        share = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"the share is a number in (0, 1], not {text!r}") from None
    if not 0.0 < share <= 1.0:
        raise argparse.ArgumentTypeError(f"the share is a number in (0, 1], not {text!r}")
    return share


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Register this module's commands."""
    experiment = commands.add_parser("experiment", help="online experiments (interleaving, A/B) on a running service "
                                                        "(admin API)")
    actions = experiment.add_subparsers(dest="action", required=True)
    sub = admin_command(actions, "start", "serve two arms side by side to a share of searches", cmd_start)
    sub.add_argument("name")
    sub.add_argument("--control", default="default", help="the arm compared against (default: default)")
    sub.add_argument("--treatment", required=True, help="the arm under test")
    sub.add_argument("--method", choices=("interleave", "ab"), default="interleave",
                     help="interleave: each search shows both arms' products, team-draft interleaved (default); ab: "
                          "each user sees one arm")
    sub.add_argument("--share", type=_share, default=0.1, help="the share of searches in the experiment, in (0, 1] "
                                                              "(default 0.1)")
    sub = admin_command(actions, "stop", "stop serving the experiment; its figures stay", cmd_stop)
    sub.add_argument("name")
    sub = admin_command(actions, "status", "each experiment's figures and decision", cmd_status)
    sub.add_argument("name", nargs="?")
