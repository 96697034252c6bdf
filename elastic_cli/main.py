"""`elastic` entry point: one subcommand per module, imported only when that command runs so
that `elastic info` never pays for FastAPI and `elastic serve` never for the training code."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from types import ModuleType

# subcommand → module in this package exposing add_arguments(parser) and run(args) -> int
COMMANDS = {
    "train": ("elastic_anytime.elastic_cli.train_cmd", "train an elastic network and write a checkpoint"),
    "eval": ("elastic_anytime.elastic_cli.eval_cmd", "per-exit accuracy of a checkpoint on a dataset"),
    "info": ("elastic_anytime.elastic_cli.info_cmd", "exits, MFLOPs, params, accuracy and classes of a checkpoint"),
    "serve": ("elastic_anytime.elastic_cli.serve_cmd", "serve a checkpoint over HTTP with per-request budgets"),
    "bench": ("elastic_anytime.elastic_cli.bench_cmd", "load-test a server: budgets, accuracy, latency, throughput"),
}


def _load(module_name: str) -> ModuleType | None:
    """The command's module, or None while a later issue has not written it yet."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name != module_name:
            raise
        return None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Every subcommand is listed; only `command`'s module is imported and given its arguments."""
    parser = argparse.ArgumentParser(prog="elastic", description="Anytime inference with elastic networks.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.set_defaults(handler=None)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        module = _load(module_name) if name == command else None
        if module is not None:
            module.add_arguments(command_parser)
            command_parser.set_defaults(handler=module.run)
    return parser


def _command(argv: list[str]) -> str | None:
    """The subcommand named in `argv` (the first non-option word: top-level options take no value)."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(_command(argv))
    args, unknown = parser.parse_known_args(argv)
    if args.handler is None:  # a command of a later issue: whatever its arguments, say so
        sys.stderr.write(f"elastic {args.command}: not implemented yet\n")
        return 2
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
