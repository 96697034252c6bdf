"""One anytime chart: checkpoints' exits (anytime MFLOPs, test top-1 from `elastic eval --write-meta`)
beside the published curves that issue 16 compares against (read off the RANet authors' figure).

    .venv/bin/python experiments/scripts/anytime_chart.py docs/anytime-cascade.png \
        "cascade=models/pretrained/cascade-cifar10" "ResNet-9=models/pretrained/resnet9-cifar10" \
        "plain 50=runs/plain50-ckpt" "plain 100=runs/plain100-ckpt"
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

log = logging.getLogger("anytime_chart")

PUBLISHED = {
    "RANet (300 epochs)": ([31, 62, 89, 127, 190], [91.4, 92.0, 93.1, 93.3, 93.7]),
    "MSDNet (300 epochs)": ([31, 51, 103, 147, 243], [89.5, 90.9, 92.7, 93.3, 93.7]),
}


def curve(checkpoint: Path) -> tuple[list[float], list[float]]:
    exits = json.loads((checkpoint / "elastic.json").read_text())["exits"]
    if any(e.get("accuracy") is None for e in exits):
        raise ValueError(f"{checkpoint}: run `elastic eval {checkpoint} --write-meta` first")
    return [e["anytime_mflops"] for e in exits], [100 * e["accuracy"] for e in exits]


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("curves", nargs="+", help="LABEL=CHECKPOINT_DIR")
    args = parser.parse_args()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for label, (mflops, top1) in PUBLISHED.items():
        ax.plot(mflops, top1, linestyle="--", marker=".", color="grey", alpha=0.6, label=label)
    for item in args.curves:
        label, _, path = item.partition("=")
        mflops, top1 = curve(Path(path))
        style = {"marker": "*", "markersize": 12, "linestyle": ""} if len(mflops) == 1 else {"marker": "o"}
        ax.plot(mflops, top1, label=label, **style)
        log.info("%s: %s", label, ", ".join(f"{m:.0f} → {a:.1f}" for m, a in zip(mflops, top1, strict=True)))
    ax.set_xlabel("anytime MFLOPs per image")
    ax.set_ylabel("CIFAR-10 test top-1 (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out)


if __name__ == "__main__":
    main()
