"""The `shoprank` command: export, index, serve, search, catalog, rollout, experiment, eval, train, demo. One module per command
group.

Every user error ends as one line on stderr ("shoprank: error: ...") and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys

import grpc

from core.errors import ShoprankError

from . import catalog, evaluation, experiment, exporting, feedback, fitting, rollout, serving, workbench


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shoprank", description="E-commerce search ranking served by NVIDIA Triton.")
    commands = parser.add_subparsers(dest="command", required=True)
    for group in (exporting, serving, catalog, rollout, experiment, feedback, evaluation, fitting, workbench):
        group.add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except ShoprankError as error:
        print(f"shoprank: error: {error}", file=sys.stderr)
        return 2
    except grpc.aio.AioRpcError as error:
        print(f"shoprank: error: {error.code().name}: {error.details()}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
