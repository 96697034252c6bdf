"""`elastic train`: every TrainConfig field is a flag; `--config FILE` (JSON/TOML) sets defaults."""

from __future__ import annotations

import argparse
import sys

from elastic_anytime.training.config import add_config_arguments, config_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from elastic_anytime.training.train import train

    try:
        cfg = config_from_args(args)
        checkpoint = train(cfg)
    except (ValueError, FileNotFoundError) as err:
        sys.stderr.write(f"error: {err}\n")
        return 1
    sys.stdout.write(f"{checkpoint}\n")
    return 0
