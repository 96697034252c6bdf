"""Training configuration: one dataclass, filled from defaults, then a JSON/TOML file, then CLI flags."""

from __future__ import annotations

import argparse
import json
import tomllib
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any


@dataclass
class TrainConfig:
    model: str = "resnet9"
    model_args: dict[str, Any] = field(default_factory=dict)  # backbone args, e.g. {"width": 32}
    exits: str = "all"  # all | final | N (every N-th block) | comma-separated block indices
    head: str = "linear"  # exit head for early exits: linear | conv
    dropout: float = 0.0
    data: str = "cifar10"  # cifar10 | cifar100 | path to an ImageFolder root with train/ and test/
    data_root: str = "data"
    download: bool = False
    image_size: int = 32  # ImageFolder images are resized (shorter side) and centre-cropped to this
    limit_train: int = 0  # use only the first N shuffled training images (0 = all); for quick runs
    limit_test: int = 0
    out: str = "runs/elastic"
    epochs: int = 20
    batch_size: int = 512
    optimizer: str = "sgd"  # sgd (nesterov) | adamw
    lr: float = 0.2
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "onecycle"  # onecycle (linear up then down) | cosine (warm-up then cosine)
    warmup: float = 0.2  # fraction of all steps spent warming up
    loss: str = "distill"  # uniform (the paper) | weighted (deeper exits weigh more) | distill
    label_smoothing: float = 0.0
    distill_temperature: float = 3.0
    distill_alpha: float = 0.5
    crop_padding: int = 4
    flip: bool = True
    cutout: int = 0  # side of the cut-out square, 0 = off
    precision: str = "auto"  # auto (bf16 on CPU, fp16 on CUDA) | bf16 | fp16 | fp32
    channels_last: bool = True
    device: str = "auto"
    threads: int = 0  # torch threads on CPU, 0 = torch's default
    seed: int = 0
    eval_every: int = 1  # evaluate every exit each N epochs (and always after the last)
    resume: bool = False  # continue from OUT/state if it exists
    progress: bool = True

    def __post_init__(self) -> None:
        # Fail before minutes of data loading, not after.
        choices = {
            "optimizer": ("sgd", "adamw"),
            "schedule": ("onecycle", "cosine"),
            "loss": ("uniform", "weighted", "distill"),
            "precision": ("auto", "bf16", "fp16", "fp32"),
            "head": ("linear", "conv"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {getattr(self, name)!r}")
        for name in ("epochs", "batch_size", "eval_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        self.exit_spec()

    def exit_spec(self) -> str | int | list[int]:
        if self.exits in ("all", "final"):
            return self.exits
        if self.exits.isdigit():
            return int(self.exits)
        try:
            return [int(i) for i in self.exits.split(",")]
        except ValueError as err:
            raise ValueError(f"exits must be all, final, N or a list like 0,2,4; got {self.exits!r}") from err

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _parse_value(kind: Any, text: str) -> Any:
    if kind is bool or kind == "bool":
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise argparse.ArgumentTypeError(f"expected a boolean, got {text!r}")
    return {"int": int, "float": float, "str": str}.get(kind, kind)(text)


def _parse_model_arg(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"--model-arg takes KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per config field (`--batch-size`, …); unset flags keep the file's or default value."""
    parser.add_argument("--config", type=Path, help="JSON or TOML file with TrainConfig fields")
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.name == "model_args":
            parser.add_argument(
                "--model-arg", dest="model_args", action="append", type=_parse_model_arg, metavar="KEY=VALUE"
            )
            continue
        default = f.default if f.default is not MISSING else None
        kind = f.type if isinstance(f.type, str) else f.type.__name__
        parser.add_argument(
            flag,
            dest=f.name,
            default=None,
            type=lambda text, kind=kind: _parse_value(kind, text),
            help=f"default: {default}",
        )


def _normalise_file_values(values: dict[str, Any], source: Path) -> None:
    """A config file's values must have the field's type (an int is fine where a float is expected).
    `exits` may also be written as an int or a list of ints; they become the CLI's string form."""
    exits = values.get("exits")
    if isinstance(exits, int) and not isinstance(exits, bool):  # `exits = 4`: every 4th block
        values["exits"] = str(exits)
    elif isinstance(exits, list) and all(isinstance(i, int) for i in exits):  # `exits = [0, 2, 4]`
        values["exits"] = ",".join(str(i) for i in exits)
    expected = {"bool": (bool,), "int": (int,), "float": (int, float), "str": (str,), "dict[str, Any]": (dict,)}
    for f in fields(TrainConfig):
        if f.name not in values:
            continue
        value, kinds = values[f.name], expected[f.type]
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            raise ValueError(f"{source}: {f.name} must be {f.type}, got {value!r}")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    values: dict[str, Any] = {}
    if args.config:
        text = args.config.read_text()
        values = tomllib.loads(text) if args.config.suffix == ".toml" else json.loads(text)
        if not isinstance(values, dict):
            raise ValueError(f"{args.config} must hold a table/object of TrainConfig fields")
        unknown = set(values) - {f.name for f in fields(TrainConfig)}
        if unknown:
            raise ValueError(f"unknown config keys in {args.config}: {sorted(unknown)}")
        _normalise_file_values(values, args.config)
    for f in fields(TrainConfig):
        value = getattr(args, f.name, None)
        if value is None:
            continue
        if f.name == "model_args":
            values["model_args"] = {**values.get("model_args", {}), **dict(value)}
        else:
            values[f.name] = value
    return TrainConfig(**values)
