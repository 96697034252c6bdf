"""Front-end decode + preprocessing per CIFAR-10 JPEG: the torch path it replaced against service.engine.preprocess
(NumPy), back to back (hot) and after 200 ms idle (cold). Usage: python experiments/scripts/preprocess_cost.py"""

import glob
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from elastic_anytime.models.pretrained import default_checkpoint
from elastic_anytime.service.engine.loading import load_model
from elastic_anytime.service.http.imaging import finish_image, open_image
from elastic_anytime.service.settings import Settings

torch.set_num_threads(1)
runner, _ = load_model(Settings(), default_checkpoint(), torch.device("cpu"))
mean = torch.tensor(runner.meta["mean"], dtype=torch.float32).view(-1, 1, 1)
std = torch.tensor(runner.meta["std"], dtype=torch.float32).view(-1, 1, 1)
datas = [Path(f).read_bytes() for f in sorted(glob.glob("../shared/data/cifar10/test/*/*.jpg"))[::250]]


def torch_path(data: bytes) -> torch.Tensor:  # the replaced ModelRunner.preprocess, for images at the model's size
    image = finish_image(open_image(data, 40_000_000), 3, runner.min_side)
    pixels = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)
    return pixels.to(torch.float32).mul_(1.0 / 255).sub_(mean).div_(std)


def numpy_path(data: bytes) -> np.ndarray:
    return runner.preprocess(finish_image(open_image(data, 40_000_000), 3, runner.min_side))


for rnd in range(2):
    for gap in (0.0, 0.2):
        for name, fn in (("torch", torch_path), ("numpy", numpy_path)):
            times = []
            for data in datas:
                if gap:
                    time.sleep(gap)
                t = time.perf_counter()
                fn(data)
                times.append((time.perf_counter() - t) * 1e6)
            times = times[3:]
            p50, p90 = statistics.median(times), np.percentile(times, 90)
            print(f"round {rnd} gap {gap:.1f}s {name}: p50 {p50:.0f} us, p90 {p90:.0f} us")
