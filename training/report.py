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
    return _save(fig, path)


def plot_comparison(
    curves: dict[str, tuple[Sequence[float], Sequence[float], float, float]],
    path: str | Path,
    title: str = "Elastic training (exits) vs the same backbone trained without exits",
) -> Path:
    """One panel per backbone: label → (exit MFLOPs, exit accuracies, baseline MFLOPs, baseline accuracy)."""
    fig, axes = plt.subplots(1, len(curves), figsize=(4.2 * len(curves), 3.8), dpi=120, squeeze=False)
    for ax, (label, (mflops, accuracy, base_mflops, base_accuracy)) in zip(axes[0], curves.items(), strict=True):
        ax.plot(mflops, [100 * a for a in accuracy], marker="o", markersize=3, label="trained with exits")
        ax.plot([base_mflops], [100 * base_accuracy], marker="*", markersize=12, linestyle="", label="--exits final")
        ax.set_title(label)
        ax.set_xlabel("MFLOPs per image")
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    axes[0][0].set_ylabel("top-1 accuracy (%)")
    fig.suptitle(title)
    return _save(fig, path)


def _save(fig: plt.Figure, path: str | Path) -> Path:
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
