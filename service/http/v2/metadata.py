"""Server and model metadata of the Open Inference Protocol. The model's carries, beyond the protocol's
fields, what a client needs to use it: its exits (cost, accuracy, live latency), classes, and the
preprocessing that the `pixels` input must already have."""

from __future__ import annotations

from typing import Any

from elastic_anytime.service.http.state import ServiceState
from elastic_anytime.service.http.v2.identity import model_name, model_version
from elastic_anytime.service.http.v2.outputs import OUTPUTS, shape_of
from elastic_anytime.service.http.v2.request_body import IMAGE_INPUT, PIXELS_INPUT

SERVER_NAME = "elastic"
# binary_tensor_data: Triton's binary tensor extension; parameters: request and response parameters
EXTENSIONS = ["binary_tensor_data", "parameters"]
PLATFORM = "pytorch_elastic"  # a PyTorch network with early exits, served stage by stage


def server_metadata(version: str) -> dict[str, Any]:
    return {"name": SERVER_NAME, "version": version, "extensions": EXTENSIONS}


def model_metadata(service: ServiceState) -> dict[str, Any]:
    runner, profile = service.runner, service.profile
    classes = len(runner.classes)
    exits = []
    for k, meta in enumerate(runner.meta["exits"]):
        exits.append({
            "index": k,
            "name": str(meta["name"]),
            "mflops": float(meta["mflops"]),
            "anytime_mflops": runner.exit_mflops[k],
            "accuracy": meta.get("accuracy"),
            "temperature": runner.temperatures[k],
            "cumulative_p95_ms_batch1": round(profile.predict_path(k, 1, "p95") * 1e3, 4),
        })  # fmt: skip
    return {
        "name": model_name(service),
        "versions": [model_version(runner)],
        "platform": PLATFORM,
        "inputs": [
            {"name": IMAGE_INPUT, "datatype": "BYTES", "shape": [-1]},
            {"name": PIXELS_INPUT, "datatype": "FP32", "shape": [-1, *runner.input_size]},
        ],
        "outputs": [
            {"name": name, "datatype": datatype, "shape": shape_of(name, -1, classes)}
            for name, (datatype, _) in OUTPUTS.items()
        ],
        "architecture": str(runner.meta["arch"]["name"]),
        "classes": list(runner.classes),
        "exits": exits,
        "preprocessing": {
            "input_size": list(runner.input_size),
            "mean": runner.meta["mean"],
            "std": runner.meta["std"],
        },
    }
