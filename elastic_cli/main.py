"""`elastic` entry point: one subcommand per module, imported only when that command runs so
that `elastic info` never pays for FastAPI and `elastic serve` never for the training code."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# subcommand → module in this package exposing add_arguments(parser) and run(args) -> int
COMMANDS = {
    "train": ("elastic_cli.train_cmd", "train an elastic network and write a checkpoint"),
    "eval": ("elastic_cli.eval_cmd", "per-exit accuracy of a checkpoint on a dataset"),
    "info": ("elastic_cli.info_cmd", "exits, MFLOPs, params, accuracy and classes of a checkpoint"),
    "serve": ("elastic_cli.serve_cmd", "serve a checkpoint over HTTP with per-request budgets"),
    "bench": ("elastic_cli.bench_cmd", "load-test a server: budgets, accuracy, latency, throughput"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="elastic", description="Anytime inference with elastic networks.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name != module_name:
                raise
            command_parser.set_defaults(handler=None)
            continue
        module.add_arguments(command_parser)
        command_parser.set_defaults(handler=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    if args.handler is None:
        sys.stderr.write(f"elastic {args.command}: not implemented yet\n")
        return 2
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
