"""Small helpers shared by the reliability tests (imported as `reliability_helpers`): the server's
memory, image bytes, Prometheus values and checkpoints compatible with the shipped one."""

from __future__ import annotations

import asyncio
import io
import json
import re
import socket
from pathlib import Path

import torch
from PIL import Image

from elastic_anytime.models.checkpoint import build_metadata, save_checkpoint
from elastic_anytime.models.pretrained import default_checkpoint
from elastic_anytime.models.registry import create_model


def rss_bytes(pid: int, peak: bool = False) -> int:
    """Resident memory of a process (Linux /proc), in bytes: now, or its peak so far (VmHWM)."""
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(rf"^{'VmHWM' if peak else 'VmRSS'}:\s+(\d+) kB", status, re.M)
    assert found, status
    return int(found.group(1)) * 1024


def encode(image: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def metric(text: str, name: str) -> float:
    """The value of one unlabelled (or first) series of `name` in a Prometheus exposition."""
    found = re.search(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.M)
    assert found, f"{name} not in metrics"
    return float(found.group(1))


def tiny_checkpoint(directory: Path, classes: list[str], input_size: tuple[int, int, int] | None = None) -> Path:
    """A tiny model saved as a real checkpoint, with the shipped model's input format unless told."""
    shipped = json.loads((default_checkpoint() / "elastic.json").read_text())
    size = tuple(input_size or shipped["input_size"])
    torch.manual_seed(0)
    model = create_model("tiny", num_classes=len(classes), head="conv").eval()
    args = {"num_classes": len(classes), "head": "conv"}
    meta = build_metadata(model, "tiny", args, classes, size, shipped["mean"], shipped["std"])  # type: ignore[arg-type]
    return save_checkpoint(directory, model, meta)


def multipart_request(path: str, image: bytes, fields: dict[str, str] | None = None) -> bytes:
    """A complete keep-alive HTTP/1.1 multipart POST, built once and sent many times (a cheap load generator)."""
    boundary = "reliability-boundary"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in (fields or {}).items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n'
        "Content-Type: image/png\r\n\r\n".encode()
        + image
        + b"\r\n"
    )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, dict[str, str], bytes]:
    """Send one request on an open connection and read one response (Content-Length bodies only)."""
    writer.write(request)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines if line)}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(status_line.split()[1]), headers, body


def read_response(sock: socket.socket) -> tuple[int, dict]:
    """Status and JSON body of one response read from a raw socket (the server answers with a JSON body)."""
    reply = b""
    while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        reply += chunk
    status_line, _, rest = reply.partition(b"\r\n")
    return int(status_line.split()[1]), json.loads(rest.partition(b"\r\n\r\n")[2])
