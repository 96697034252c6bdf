"""`elastic eval CHECKPOINT --data DATA`: per-exit top-1 accuracy, mean confidence, MFLOPs and share
of full compute, as a table (stdout), JSON (`--json`) and an anytime plot (`--png`)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", nargs="?", default=None, help="checkpoint directory (default: the shipped one)")
    parser.add_argument(
        "--data", required=True, help="cifar10 | cifar100 (torchvision) | ImageFolder root with train/ and test/"
    )
    parser.add_argument("--data-root", default="data", help="where torchvision's CIFAR files live (default: data)")
    parser.add_argument("--download", action="store_true", help="download CIFAR through torchvision if missing")
    parser.add_argument("--split", choices=("test", "train"), default="test")
    parser.add_argument("--limit", type=int, default=0, help="score a fixed random N images only (0 = all)")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, … or auto")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the report as JSON ('-' for stdout)")
    parser.add_argument("--png", type=Path, metavar="FILE", help="write the anytime curve (accuracy vs MFLOPs)")
    parser.add_argument(
        "--write-meta",
        action="store_true",
        help="store the accuracies and the guardrail's agreement baseline in the checkpoint's elastic.json",
    )
    parser.add_argument(
        "--write-agreement",
        action="store_true",
        help="store only the guardrail's agreement baseline in elastic.json (every other field stays as it is)",
    )


def _device(name: str) -> torch.device:
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"bad --device {name!r}: {err}") from err


def run(args: argparse.Namespace) -> int:
    import torch

    from elastic_anytime.models.checkpoint import CheckpointError, load_checkpoint
    from elastic_anytime.models.pretrained import default_checkpoint
    from elastic_anytime.training.evaluate import (
        checkpoint_test_data,
        evaluate,
        exits_report,
        format_report,
        write_accuracies,
    )
    from elastic_anytime.training.report import plot_anytime_curve

    if args.limit < 0 or args.batch_size < 1:
        sys.stderr.write("error: --limit must be >= 0 and --batch-size >= 1\n")
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    path = Path(args.checkpoint or default_checkpoint())
    try:
        device = _device(args.device)
        ckpt = load_checkpoint(path, device)
        data = checkpoint_test_data(ckpt.meta, args.data, args.data_root, args.download, args.limit, args.split)
    except (CheckpointError, FileNotFoundError, ValueError) as err:
        sys.stderr.write(f"error: {err}\n")
        return 1
    meta = ckpt.meta
    scores = evaluate(
        ckpt.model, data.images, data.labels, meta["mean"], meta["std"], batch_size=args.batch_size, device=device
    )
    rows = exits_report(meta, scores)
    report = {
        "checkpoint": str(path),
        "arch": meta["arch"]["name"],
        "data": args.data,
        "split": args.split,
        "images": scores.count,
        "exits": rows,
    }
    to_stdout = args.json is not None and str(args.json) == "-"
    table = f"{path} on {args.data} ({args.split}, {scores.count} images)\n{format_report(rows)}\n"
    (sys.stderr if to_stdout else sys.stdout).write(table)  # stdout stays pure JSON with --json -
    if args.json:
        text = json.dumps(report, indent=2) + "\n"
        if to_stdout:
            sys.stdout.write(text)
        else:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(text)
    if args.png:
        curve = {meta["arch"]["name"]: ([r["anytime_mflops"] for r in rows], scores.accuracy)}
        plot_anytime_curve(curve, args.png, title=f"{path.name} on {Path(args.data).name} ({args.split})")
    if args.write_meta:
        evaluation = {"data": Path(args.data).name, "split": args.split, "limit": args.limit}
        write_accuracies(path, scores, evaluation)
        log.info("stored per-exit accuracy in %s", path / "elastic.json")
    if args.write_meta or args.write_agreement:
        _write_agreement(path, ckpt, data.images, args, device)
    return 0


def _write_agreement(path: Path, ckpt: Any, images: torch.Tensor, args: argparse.Namespace, device: Any) -> None:
    """The guardrail's baseline (training.agreement): a second pass over the same images."""
    from elastic_anytime.training.agreement import agreement_table, exit_outputs, write_agreement

    meta = ckpt.meta
    temperatures = [float(e.get("temperature", 1.0)) for e in meta["exits"]]
    outputs = exit_outputs(ckpt.model, images, meta["mean"], meta["std"], temperatures, args.batch_size, device)
    table = agreement_table(outputs)
    provenance = {"data": Path(args.data).name, "split": args.split, "limit": args.limit}
    write_agreement(path, table, provenance)
    overall = ", ".join(f"{e['all']:.3f}" for e in table["exits"])
    log.info("stored the guardrail's agreement baseline in %s (all images, per exit: %s)", path / "elastic.json",
             overall)  # fmt: skip
