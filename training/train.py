"""The training loop, top to bottom: data → model → optimiser → epochs → checkpoint + report.

Runs alone or under `torchrun` (DistributedDataParallel: gloo on CPU, nccl on CUDA); only rank 0
evaluates and writes. State is saved every epoch as safetensors + JSON, so `--resume` continues.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from torch.nn.parallel import DistributedDataParallel

from elastic_anytime.models.checkpoint import build_metadata, save_checkpoint
from elastic_anytime.models.elastic import ElasticNet
from elastic_anytime.models.registry import create_model
from elastic_anytime.models.transforms import normalize_batch
from elastic_anytime.training.config import TrainConfig
from elastic_anytime.training.data import augment, load_split, mean_std
from elastic_anytime.training.evaluate import evaluate
from elastic_anytime.training.losses import elastic_loss
from elastic_anytime.training.report import plot_anytime_curve

log = logging.getLogger(__name__)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    if precision == "auto":
        precision = "fp16" if device.type == "cuda" else "bf16"
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[precision]


def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    """Learning rate at `step` of `total`: linear warm-up, then linear (one-cycle) or cosine decay."""
    warm = max(1, int(cfg.warmup * total))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    if cfg.schedule == "cosine":
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * progress))
    return cfg.lr * max(0.0, 1 - progress)


def decay_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Parameter groups with no weight decay on norms and biases: it only fights the normalisation."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    groups = decay_groups(model, cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    raise ValueError(f"optimizer must be sgd or adamw, got {cfg.optimizer!r}")


def save_state(directory: Path, model: ElasticNet, opt: torch.optim.Optimizer, info: dict[str, Any]) -> None:
    """Weights, optimiser buffers and RNG as safetensors; counters and history as JSON."""
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    opt_state = opt.state_dict()
    for index, state in opt_state["state"].items():
        for name, value in state.items():
            if torch.is_tensor(value):
                tensors[f"opt.{index}.{name}"] = value.detach().cpu().contiguous()
    tensors["rng.torch"] = torch.get_rng_state()
    save_file(tensors, str(directory / "state.safetensors.tmp"))
    os.replace(directory / "state.safetensors.tmp", directory / "state.safetensors")
    (directory / "state.json").write_text(json.dumps(info, indent=2))


def load_state(directory: Path, model: ElasticNet, opt: torch.optim.Optimizer) -> dict[str, Any]:
    tensors = load_file(str(directory / "state.safetensors"))
    info = json.loads((directory / "state.json").read_text())
    model.load_state_dict({k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")})
    opt_state = opt.state_dict()
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    opt_state["state"] = state
    opt.load_state_dict(opt_state)
    torch.set_rng_state(tensors["rng.torch"])
    return info


def _distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def train(cfg: TrainConfig) -> Path:
    """Train per `cfg`; returns the checkpoint directory (OUT/checkpoint)."""
    rank, world = _distributed()
    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    amp = autocast_dtype(cfg.precision, device)
    out = Path(cfg.out)

    train_data = load_split(cfg.data, "train", cfg.data_root, cfg.download, cfg.image_size).subset(cfg.limit_train)
    test_data = load_split(cfg.data, "test", cfg.data_root, cfg.download, cfg.image_size).subset(cfg.limit_test)
    mean, std = mean_std(cfg.data, train_data)
    arch_args = {
        "num_classes": len(train_data.classes),
        "exits": cfg.exit_spec(),
        "head": cfg.head,
        "dropout": cfg.dropout,
        **cfg.model_args,
    }
    model = create_model(cfg.model, **arch_args).to(device)
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    opt = make_optimizer(model, cfg)
    scaler = torch.amp.GradScaler(device.type, enabled=amp is torch.float16)

    info: dict[str, Any] = {"epoch": 0, "history": []}
    if cfg.resume and (out / "state" / "state.json").is_file():
        info = load_state(out / "state", model, opt)
        if info.get("scaler"):  # fp16 loss scale, so a resumed run does not start from 2**16 again
            scaler.load_state_dict(info["scaler"])
        log.info("resumed from %s at epoch %d", out / "state", info["epoch"])
    net = DistributedDataParallel(model) if world > 1 else model

    per_rank = len(train_data) // world
    batch = max(1, cfg.batch_size // world)
    steps_per_epoch = math.ceil(per_rank / batch)
    total_steps = steps_per_epoch * cfg.epochs
    for epoch in range(info["epoch"], cfg.epochs):
        net.train()
        started = time.perf_counter()
        order = torch.randperm(len(train_data), generator=torch.Generator().manual_seed(cfg.seed * 1000 + epoch))
        mine = order[: per_rank * world][rank::world]
        seen, loss_sum = 0, 0.0
        hits = torch.zeros(model.num_exits)
        bar = _progress(steps_per_epoch, f"epoch {epoch + 1}/{cfg.epochs}", cfg.progress and rank == 0)
        for i in range(steps_per_epoch):
            index = mine[i * batch : (i + 1) * batch]
            images = augment(train_data.images[index], cfg.crop_padding, cfg.flip, cfg.cutout)
            x = normalize_batch(images, mean, std).to(device).contiguous(memory_format=memory_format)
            y = train_data.labels[index].to(device)
            for group in opt.param_groups:
                group["lr"] = lr_at(epoch * steps_per_epoch + i, total_steps, cfg)
            with torch.autocast(device.type, dtype=amp) if amp else nullcontext():
                outputs = net(x)
            loss = elastic_loss(outputs, y, cfg.loss, cfg.label_smoothing, cfg.distill_temperature, cfg.distill_alpha)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            seen += len(y)
            loss_sum += loss.item() * len(y)
            hits += torch.stack([(z.argmax(1) == y).sum() for z in outputs]).float().cpu()
            if bar is not None:
                bar.update(1)
                accs = " ".join(f"{100 * h / seen:.0f}" for h in hits)
                bar.set_postfix_str(f"loss {loss_sum / seen:.3f} acc/exit {accs}")
        if bar is not None:
            bar.close()
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "train_loss": loss_sum / seen,
            "train_accuracy": (hits / seen).tolist(),
            "seconds": time.perf_counter() - started,
        }
        # The last epoch is scored once, in fp32, by _write_outputs (the numbers the checkpoint keeps).
        last = epoch + 1 == cfg.epochs
        if rank == 0 and not last and (epoch + 1) % max(1, cfg.eval_every) == 0:
            scores = evaluate(model, test_data.images, test_data.labels, mean, std, device=device, autocast_dtype=amp)
            record["test_accuracy"] = scores.accuracy
        if rank == 0:
            test = record.get("test_accuracy")
            log.info(
                "epoch %d/%d: loss %.4f, train acc per exit %s%s (%.0f s)",
                epoch + 1,
                cfg.epochs,
                record["train_loss"],
                _percents(record["train_accuracy"]),
                f", test acc per exit {_percents(test)}" if test else "",
                record["seconds"],
            )
        info["history"].append(record)
        info["epoch"] = epoch + 1
        info["scaler"] = scaler.state_dict()
        if rank == 0:
            save_state(out / "state", model, opt, info)
    if world > 1:
        dist.barrier()
    checkpoint = out / "checkpoint"
    if rank == 0:
        _write_outputs(cfg, model, train_data.classes, mean, std, test_data, arch_args, info, device)
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return checkpoint


def _write_outputs(
    cfg: TrainConfig,
    model: ElasticNet,
    classes: list[str],
    mean: tuple[float, ...],
    std: tuple[float, ...],
    test_data: Any,
    arch_args: dict[str, Any],
    info: dict[str, Any],
    device: torch.device,
) -> None:
    """Final fp32 evaluation, checkpoint with per-exit accuracy, metrics.json and the anytime plot."""
    out = Path(cfg.out)
    model = model.to(memory_format=torch.contiguous_format)
    scores = evaluate(model, test_data.images, test_data.labels, mean, std, device=device)
    if info["history"]:
        info["history"][-1]["test_accuracy"] = scores.accuracy
    log.info("final test accuracy per exit (fp32): %s", _percents(scores.accuracy))
    image_size = tuple(int(v) for v in test_data.images.shape[1:])
    model_cpu = model.cpu()
    meta = build_metadata(
        model_cpu,
        cfg.model,
        arch_args,
        classes,
        image_size,
        list(mean),
        list(std),
        dataset=cfg.data if cfg.data in ("cifar10", "cifar100") else Path(cfg.data).name,
        training=cfg.to_dict(),
        accuracies=scores.accuracy,
    )
    meta["evaluation"] = {"split": "test", "images": scores.count, "confidence": scores.confidence}
    save_checkpoint(out / "checkpoint", model_cpu, meta)
    metrics = {"config": cfg.to_dict(), "history": info["history"], "final": meta["exits"]}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    plot_anytime_curve(
        {cfg.model: ([e["mflops"] for e in meta["exits"]], scores.accuracy)},
        out / "anytime.png",
        title=f"{cfg.model} on {meta['dataset']}",
    )
    log.info("wrote %s, metrics.json and anytime.png in %s", out / "checkpoint", out)


def _percents(fractions: list[float]) -> str:
    return " ".join(f"{100 * a:.2f}" for a in fractions)


def _progress(total: int, desc: str, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)
