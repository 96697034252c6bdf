"""The GPU recipe behind the shipped checkpoint: a teacher, then students distilled from it, each
trained for as many epochs as its share of a fixed time allows.

One run does it all, because a GPU is lent for minutes at a time: decode a packed split, hold out
images for calibration, train the teacher, then every student of the recipe (the elastic network
and its plain baselines, with the same epochs' schedule, augmentation and teacher). Each finished
model is written to OUT at once as one safetensors file whose metadata holds its architecture and
training record; `training.import_fast` turns it into an elastic checkpoint.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812 - the conventional name
from safetensors.torch import save_file
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from elastic_anytime.models.registry import create_model
from elastic_anytime.models.transforms import normalize_batch
from elastic_anytime.training.data import CIFAR10_MEAN_STD, TensorData, augment
from elastic_anytime.training.evaluate import evaluate
from elastic_anytime.training.packed import load_packed
from elastic_anytime.training.teacher import Teacher
from elastic_anytime.training.train import decay_groups

log = logging.getLogger("fast_recipe")


def holdout_split(count: int, holdout: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train indices, held-out indices): a fixed random subset is kept out for calibration."""
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
    return order[holdout:].sort().values, order[:holdout].sort().values


def exit_loss(
    logits: list[torch.Tensor],
    labels: torch.Tensor,
    teacher: torch.Tensor | None,
    smoothing: float,
    temperature: float,
    alpha: float,
    self_distill: bool = False,
) -> torch.Tensor:
    """Mean over exits of cross-entropy mixed with a KL term towards the teacher's softened prediction.

    Without a teacher, `self_distill` makes the final exit (detached) the teacher of the earlier ones,
    while the final exit itself learns from the labels alone ("Be Your Own Teacher").
    """
    total = torch.zeros((), device=labels.device)
    learners = logits
    if teacher is None and self_distill and len(logits) > 1:
        teacher, learners = logits[-1].detach(), logits[:-1]
        total = total + F.cross_entropy(logits[-1].float(), labels, label_smoothing=smoothing)
    target = F.softmax(teacher.float() / temperature, dim=1) if teacher is not None else None
    for z in learners:
        z = z.float()
        ce = F.cross_entropy(z, labels, label_smoothing=smoothing)
        if target is None:
            total = total + ce
            continue
        kl = F.kl_div(F.log_softmax(z / temperature, dim=1), target, reduction="batchmean")
        total = total + (1 - alpha) * ce + alpha * temperature**2 * kl
    return total / len(logits)


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def accuracies(model: nn.Module, data: TensorData) -> list[float]:
    """Top-1 of every exit on `data` (on its device), in bf16 on CUDA as training runs."""
    cuda = data.images.device.type == "cuda"
    mean, std = CIFAR10_MEAN_STD
    dtype = torch.bfloat16 if cuda else None
    scores = evaluate(model, data.images, data.labels, mean, std, 1000, data.images.device, dtype, channels_last=True)
    return scores.accuracy


@torch.no_grad()
def teacher_logits(teacher: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Flip-averaged: the teacher's better prediction for the same cost a student step spends anyway."""
    return (teacher(x)[0] + teacher(x.flip(3))[0]) / 2


def train_model(
    model: nn.Module,
    data: TensorData,
    val: TensorData,
    spec: dict[str, Any],
    common: dict[str, Any],
    teacher: nn.Module | None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Train within spec['seconds'] (epochs fitted from timed steps, at most spec['max_epochs'])."""
    device = data.images.device
    batch = int(common["batch_size"])
    steps_per_epoch = len(data) // batch
    model = model.to(device, memory_format=torch.channels_last)
    opt = torch.optim.SGD(decay_groups(model, common["weight_decay"]), lr=0.0, momentum=0.9, nesterov=True)
    smoothing = spec.get("label_smoothing", common["label_smoothing"])
    cutout = spec.get("cutout", common["cutout"])
    # bf16 autocast: always on CUDA; on a CPU with bf16 arithmetic (avx512_bf16, AMX) a recipe may ask for it
    bf16 = device.type == "cuda" or bool(common.get("bf16_cpu", False))
    self_distill = bool(common.get("self_distill", False))

    def step(index: torch.Tensor, lr: float, update: bool) -> torch.Tensor:
        x = normalize_batch(augment(data.images[index], common["padding"], True, cutout), *CIFAR10_MEAN_STD)
        x = x.contiguous(memory_format=torch.channels_last)
        y = data.labels[index]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            target = teacher_logits(teacher, x) if teacher is not None else None
            outs = model(x)
        loss = exit_loss(outs, y, target, smoothing, common["temperature"], common["alpha"], self_distill)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if update:
            for group in opt.param_groups:
                group["lr"] = lr
            opt.step()
            ema.update_parameters(model)
        return loss

    # Time a few steps that change nothing (no optimiser step) to fit the epochs into the time share.
    model.train()
    probe = torch.randint(0, len(data), (batch,), device=device)
    for _ in range(3):
        step(probe, 0.0, False)
    _sync(device)
    started = time.perf_counter()
    timed = 8
    for _ in range(timed):
        step(probe, 0.0, False)
    _sync(device)
    step_s = (time.perf_counter() - started) / timed
    if spec.get("epochs"):  # fixed, e.g. a baseline given the same epochs as the network it is compared with
        epochs = int(spec["epochs"])
        affordable = int(1.5 * spec["seconds"] / (step_s * steps_per_epoch))
        if epochs > affordable:
            log.warning("%s: %d epochs would overrun its time; %d instead", spec["name"], epochs, affordable)
            epochs = max(1, affordable)
    else:
        epochs = max(1, min(int(spec["max_epochs"]), int(spec["seconds"] / (step_s * steps_per_epoch * 1.08))))
    total = epochs * steps_per_epoch
    warmup = max(1, int(common["warmup_epochs"] * steps_per_epoch))
    log.info("%s: %.1f ms a step, %d epochs of %d steps", spec["name"], 1000 * step_s, epochs, steps_per_epoch)
    # the average spans at most the last 5 % of the steps: a short run's average must not keep its first weights
    decay = min(common["ema"], max(0.0, 1 - 20 / total))
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)

    history = []
    started = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(data), device=device)
        for i in range(steps_per_epoch):
            s = epoch * steps_per_epoch + i
            loss = step(order[i * batch : (i + 1) * batch], lr_at(s, total, spec["lr"], warmup), True)
        if (epoch + 1) % max(1, epochs // 5) == 0 or epoch + 1 == epochs:
            record = {
                "epoch": epoch + 1,
                "loss": round(loss.item(), 4),
                "seconds": round(time.perf_counter() - started, 1),
            }
            record["val_ema"] = [round(a, 4) for a in accuracies(ema.module, val)]
            history.append(record)
            log.info("%s: %s", spec["name"], record)
    final = ema.module
    result = {
        "name": spec["name"],
        "epochs": epochs,
        "step_ms": round(1000 * step_s, 2),
        "seconds": round(time.perf_counter() - started, 1),
        "val": [round(a, 4) for a in accuracies(final, val)],
        "val_raw": [round(a, 4) for a in accuracies(model, val)],
        "history": history,
    }
    return final, result


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def save_model(model: nn.Module, path: Path, arch: dict[str, Any], result: dict[str, Any]) -> None:
    tensors = {
        k: v.detach().to(torch.float16 if v.is_floating_point() else v.dtype).cpu().contiguous()
        for k, v in model.state_dict().items()
    }
    save_file(tensors, str(path), metadata={"arch": json.dumps(arch), "result": json.dumps(result)})


def run(recipe: dict[str, Any], data_dir: Path, out: Path, device: torch.device, workers: int) -> dict[str, Any]:
    begun = time.perf_counter()
    torch.manual_seed(recipe["seed"])
    torch.backends.cudnn.benchmark = True
    everything = load_packed(data_dir, workers)
    if recipe.get("limit"):
        everything = everything.subset(int(recipe["limit"]), recipe["seed"])
    train_idx, val_idx = holdout_split(len(everything), recipe["holdout"], recipe["seed"])
    data = TensorData(
        everything.images[train_idx].to(device), everything.labels[train_idx].to(device), everything.classes
    )
    val = TensorData(everything.images[val_idx].to(device), everything.labels[val_idx].to(device), everything.classes)
    report: dict[str, Any] = {
        "recipe": recipe,
        "classes": everything.classes,
        "holdout_indices": val_idx.tolist(),
        "mean": list(CIFAR10_MEAN_STD[0]),
        "std": list(CIFAR10_MEAN_STD[1]),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "load_seconds": round(time.perf_counter() - begun, 1),
        "models": [],
    }
    log.info("data: %d train, %d held out, %.1f s", len(data), len(val), report["load_seconds"])
    common = recipe["common"]
    teacher = None
    if recipe.get("teacher"):
        spec = recipe["teacher"]
        teacher, result = train_model(Teacher(len(data.classes), tuple(spec["widths"])), data, val, spec, common, None)
        teacher.eval().requires_grad_(False)
        save_model(
            teacher, out / "teacher.safetensors", {"name": "teacher", "args": {"widths": spec["widths"]}}, result
        )
        report["models"].append(result)
        _write(out, report)
    epochs_of: dict[str, int] = {}
    for spec in recipe["students"]:
        if spec.get("epochs_from"):
            spec = {**spec, "epochs": epochs_of.get(spec["epochs_from"], 0)}
        remaining = recipe["deadline_seconds"] - (time.perf_counter() - begun)
        if remaining < spec["seconds"] * 1.15:
            log.warning("%s skipped: %.0f s left, it needs %s", spec["name"], remaining, spec["seconds"])
            report["models"].append({"name": spec["name"], "skipped": f"{remaining:.0f} s left"})
            continue
        arch = {"name": spec["arch"], "args": {"num_classes": len(data.classes), **spec["args"]}}
        model, result = train_model(create_model(arch["name"], **arch["args"]), data, val, spec, common, teacher)
        epochs_of[spec["name"]] = result["epochs"]
        save_model(model, out / f"{spec['name']}.safetensors", arch, result)
        report["models"].append(result)
        _write(out, report)
    report["total_seconds"] = round(time.perf_counter() - begun, 1)
    _write(out, report)
    return report


def _write(out: Path, report: dict[str, Any]) -> None:
    (out / "report.json").write_text(json.dumps(report, indent=1))


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="packed split (scripts/pack_images.py)")
    parser.add_argument("--recipe", type=Path, required=True, help="JSON: teacher, students, common settings")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--workers", type=int, default=8, help="processes decoding the images")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON", help="override a recipe key")
    args = parser.parse_args()
    recipe = {**json.loads(args.recipe.read_text()), "file": str(args.recipe)}
    for item in args.set:
        key, _, value = item.partition("=")
        recipe[key] = json.loads(value)
    args.out.mkdir(parents=True, exist_ok=True)
    run(recipe, args.data, args.out, torch.device(args.device), args.workers)


if __name__ == "__main__":
    main()
