"""Plots: the anytime curve (accuracy against MFLOPs, one point per exit)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers
import matplotlib.pyplot as plt


def plot_anytime_curve(
    curves: dict[str, tuple[Sequence[float], Sequence[float]]], path: str | Path, title: str = "Anytime curve"
) -> Path:
    """`curves`: label → (MFLOPs per exit, accuracy per exit in 0..1). Writes a PNG."""
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for label, (mflops, accuracy) in curves.items():
        ax.plot(mflops, [100 * a for a in accuracy], marker="o", label=label)
    ax.set_xlabel("MFLOPs per image")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
