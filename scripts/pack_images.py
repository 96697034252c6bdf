"""Pack an ImageFolder split into one file of concatenated encoded images plus an index.

A GPU machine that receives at most 64 MiB cannot take 50,000 small files as a tar (a 512-byte
header each); packed, CIFAR-10's JPEG train split is its 46 MB of bytes. `training.packed` reads it.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

log = logging.getLogger("pack_images")
SUFFIXES = {".jpg", ".jpeg", ".png"}


def pack(split_dir: Path, out_dir: Path) -> int:
    classes = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
    out_dir.mkdir(parents=True, exist_ok=True)
    offsets, labels = [0], []
    with open(out_dir / "images.bin", "wb") as blob:
        for label, name in enumerate(classes):
            for path in sorted((split_dir / name).iterdir()):
                if path.suffix.lower() not in SUFFIXES:
                    continue
                data = path.read_bytes()
                blob.write(data)
                offsets.append(offsets[-1] + len(data))
                labels.append(label)
    np.save(out_dir / "offsets.npy", np.asarray(offsets, dtype=np.int64))
    np.save(out_dir / "labels.npy", np.asarray(labels, dtype=np.int64))
    (out_dir / "classes.json").write_text(json.dumps(classes))
    return len(labels)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("split_dir", type=Path, help="ImageFolder split: one folder of images per class")
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args()
    count = pack(args.split_dir, args.out_dir)
    log.info("packed %d images into %s", count, args.out_dir)


if __name__ == "__main__":
    main()
