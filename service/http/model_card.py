"""What a front end knows of the served model, read from its checkpoint's `elastic.json` alone: no
weights, no torch.

With the process engine the model runs in the inference process; the server process only needs the
model's description (classes, exits and their costs, the input format) and its preprocessing, which
`service.engine.preprocess` does with Pillow and NumPy. A `ModelCard` offers the attributes of
`service.engine.runner.ModelRunner` that the front end reads, with the same values
(tests/service/http/test_model_card.py holds the two to each other on the shipped checkpoint).

The checks of `elastic.json` are `models.metadata`'s (no torch); the weights and the checks that need the
model (exit names against the architecture, classes against the head size) are the inference process's,
which loads the checkpoint with `models.checkpoint.load_checkpoint`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from elastic_anytime.models.metadata import META_FILE, CheckpointError
from elastic_anytime.models.metadata import read_metadata as _read_metadata
from elastic_anytime.service.engine.preprocess import Preprocessor

ModelCardError = CheckpointError  # a checkpoint's elastic.json is missing or malformed


class ModelCard:
    """The served model as `elastic.json` describes it; the front end's stand-in for a `ModelRunner`."""

    def __init__(self, meta: dict[str, Any], path: Path | None = None) -> None:
        self.meta = meta
        self.path = path
        self.classes = list(meta["classes"])
        self.input_size = tuple(int(v) for v in meta["input_size"])
        self.num_exits = len(meta["exits"])
        # the names load_checkpoint checks against the architecture (ModelRunner.exit_names gives the model's)
        self.exit_names = [str(e["name"]) for e in meta["exits"]]
        # as ModelRunner: what a stage-by-stage run that reads every exit has spent once exit k answers
        self.exit_mflops = [float(e.get("anytime_mflops", e["mflops"])) for e in meta["exits"]]
        self.temperatures = [float(e.get("temperature", 1.0)) for e in meta["exits"]]
        self._preprocess = Preprocessor(self.input_size, meta["mean"], meta["std"])

    @classmethod
    def read(cls, directory: str | Path) -> ModelCard:
        """The card of the checkpoint in `directory`; ModelCardError if its elastic.json is missing or malformed."""
        return cls(read_metadata(directory), Path(directory))

    @property
    def channels(self) -> int:
        return self.input_size[0]

    @property
    def min_side(self) -> int:
        return min(self.input_size[1:])

    def preprocess(self, image: Image.Image) -> np.ndarray:
        """A decoded PIL image → the normalised (C, H, W) float32 array the model takes (as ModelRunner.preprocess)."""
        return self._preprocess(image)


def read_metadata(directory: str | Path) -> dict[str, Any]:
    """`models.metadata.read_metadata`, with an unreadable file (permissions) a ModelCardError too: a front
    end answers every bad checkpoint directory the same way."""
    try:
        return _read_metadata(directory)
    except OSError as err:
        raise ModelCardError(f"cannot read {Path(directory) / META_FILE}: {err}") from err
