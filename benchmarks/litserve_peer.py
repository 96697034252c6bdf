"""The peer server: LitServe serving the same checkpoint at full depth, the same API shape.

Run as `python -m elastic_anytime.benchmarks.litserve_peer --port P [--max-batch-size N --batch-timeout S
--accelerator cuda]`.
Decode, batch and forward are the plainest LitServe hooks, so the comparison measures the
serving machinery, not a different model path.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import litserve as ls
import torch
from fastapi import HTTPException

from elastic_anytime.benchmarks.inprocess import make_decoder
from elastic_anytime.models.checkpoint import load_checkpoint
from elastic_anytime.models.pretrained import default_checkpoint

log = logging.getLogger(__name__)


class FullDepthAPI(ls.LitAPI):
    def __init__(self, checkpoint_dir: Path, threads: int, max_batch_size: int, batch_timeout: float) -> None:
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout, api_path="/v1/classify")
        self.checkpoint_dir = checkpoint_dir
        self.threads = threads

    def setup(self, device: str) -> None:
        torch.set_num_threads(self.threads)
        self.device = torch.device(device)  # LitServe's choice from `accelerator`: "cpu" or "cuda:0"
        self.checkpoint = load_checkpoint(self.checkpoint_dir)
        self.model = self.checkpoint.model.to(self.device).eval()
        self.decode = make_decoder(self.checkpoint)
        self.last = self.model.num_exits - 1
        with torch.inference_mode():  # warm-up, as our server does before it reports ready
            warm = torch.zeros(1, *self.checkpoint.meta["input_size"], device=self.device)
            self.model.forward_until(warm, self.last)

    # no annotation on `request`: LitServe reads it to pick the request type, and none means the raw form
    def decode_request(self, request) -> torch.Tensor:  # type: ignore[no-untyped-def]
        upload = request.get("image") if hasattr(request, "get") else None
        if upload is None or not hasattr(upload, "file"):
            raise HTTPException(status_code=400, detail="multipart field 'image' is required")
        try:
            return self.decode(upload.file.read())
        except OSError as err:
            raise HTTPException(status_code=400, detail=f"cannot decode image: {err}") from err

    def batch(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(inputs)

    def predict(self, x: torch.Tensor) -> list[tuple[int, float]]:
        single = x.dim() == 3
        x = x.to(self.device)
        with torch.inference_mode():
            probs = self.model.forward_until(x.unsqueeze(0) if single else x, self.last).softmax(1)
            confidence, index = probs.max(1)
        answers = list(zip(index.tolist(), confidence.tolist(), strict=True))
        return answers[0] if single else answers

    def unbatch(self, output: list[tuple[int, float]]) -> list[tuple[int, float]]:
        return output

    def encode_response(self, output: tuple[int, float]) -> dict[str, Any]:
        class_id, confidence = output
        return {
            "label": self.checkpoint.classes[class_id],
            "class_id": class_id,
            "confidence": confidence,
            "exit": self.last,
            "num_exits": self.model.num_exits,
        }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("checkpoint", nargs="?", default=None)
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--threads", type=int, default=1, help="torch threads in the inference worker")
    parser.add_argument("--max-batch-size", type=int, default=1)
    parser.add_argument("--batch-timeout", type=float, default=0.0, help="seconds to wait to fill a batch")
    parser.add_argument("--accelerator", choices=["cpu", "cuda"], default="cpu", help="where the model runs")
    args = parser.parse_args(argv)
    api = FullDepthAPI(
        Path(args.checkpoint or default_checkpoint()), args.threads, args.max_batch_size, args.batch_timeout
    )
    server = ls.LitServer(api, accelerator=args.accelerator, devices=1, workers_per_device=1, timeout=30)
    server.run(host="127.0.0.1", port=args.port, generate_client_file=False, log_level="warning")


if __name__ == "__main__":
    main()
