"""How far each exit's agreement with the final exit falls under a shift of the input (docs/guardrail.md):
the test split as it is, inverted, and with heavy Gaussian noise, through training.agreement.

    .venv/bin/python experiments/scripts/guardrail_shift.py --data ../shared/data/cifar10 --limit 2000
"""

from __future__ import annotations

import argparse
import json
import logging

import torch

from elastic_anytime.models.checkpoint import load_checkpoint
from elastic_anytime.models.pretrained import default_checkpoint
from elastic_anytime.training.agreement import agreement_table, exit_outputs
from elastic_anytime.training.evaluate import checkpoint_test_data

log = logging.getLogger("guardrail_shift")


def shifted(images: torch.Tensor, how: str, seed: int = 0) -> torch.Tensor:
    """uint8 images inverted, or with Gaussian noise of standard deviation 64 grey levels."""
    if how == "inverted":
        return 255 - images
    if how == "noise":
        noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(seed)) * 64
        return (images.float() + noise).clamp(0, 255).to(torch.uint8)
    return images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=str(default_checkpoint()))
    parser.add_argument("--data", required=True)
    parser.add_argument("--limit", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    ckpt = load_checkpoint(args.checkpoint)
    meta = ckpt.meta
    data = checkpoint_test_data(meta, args.data, limit=args.limit)
    temperatures = [float(e.get("temperature", 1.0)) for e in meta["exits"]]
    result = {}
    for how in ("none", "inverted", "noise"):
        outputs = exit_outputs(ckpt.model, shifted(data.images, how), meta["mean"], meta["std"], temperatures)
        table = agreement_table(outputs)
        result[how] = [e["all"] for e in table["exits"]]
        log.info("%-8s agreement with the final exit, per exit: %s", how, result[how])
    log.info("%s", json.dumps(result))


if __name__ == "__main__":
    main()
