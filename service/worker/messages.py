"""What an engine process tells a front end, one kind of message per line of `FIELDS`, in the wire's format
(service.worker.wire: a JSON header). Inside each process a message is a tuple, the kind then its fields in
this order; `to_header` and `from_header` translate, and refuse a message that does not have its fields."""

from __future__ import annotations

import dataclasses
from typing import Any

from elastic_anytime.service.engine.policy import Reason
from elastic_anytime.service.engine.types import Answer

FIELDS: dict[str, tuple[str, ...]] = {
    "ready": ("info", "events"),  # it serves: {checkpoint, num_exits, device}, and its whole profile
    "answer": ("id", "answer", "events"),  # a job's answer (an Answer), with the events since the last message
    "progress": ("id", "answer", "events"),  # a streamed job went on from an exit: what it would have answered
    "fail": ("id", "error", "text", "events"),  # a job refused or failed: the error's class name and message
    "events": ("events",),  # metric events and profile samples, while no answer carries them
    "reloaded": ("error", "info", "records"),  # this front end's reload: (status, code, message) or None
    "model": ("info", "records"),  # another front end's reload switched the model
    "failed": ("text",),  # the engine process cannot go on
}
ANSWER_FIELDS = tuple(f.name for f in dataclasses.fields(Answer) if f.name != "runner")


class MessageError(ValueError):
    """A message whose kind or fields are not the protocol's."""


def to_header(message: tuple) -> dict[str, Any]:
    kind, *values = message
    names = FIELDS.get(kind)
    if names is None or len(values) != len(names):
        raise MessageError(f"not a message of the protocol: {kind!r} with {len(values)} fields")
    header: dict[str, Any] = {"kind": kind}
    for name, value in zip(names, values, strict=True):
        header[name] = _answer_to_json(value) if name == "answer" else value
    return header


def from_header(header: dict[str, Any]) -> tuple:
    names = FIELDS.get(header.get("kind"))  # type: ignore[arg-type]
    if names is None or any(name not in header for name in names):
        raise MessageError(f"not a message of the protocol: {sorted(header)}")
    values = []
    for name in names:
        value = header[name]
        if name == "answer":
            value = _answer_from_json(value)
        elif name == "events":
            value = [tuple(event) for event in value]
        values.append(value)
    return (header["kind"], *values)


def _answer_to_json(answer: Answer) -> dict[str, Any]:
    """Its fields but the runner (the front end labels answers from its own description of the model)."""
    out = {name: getattr(answer, name) for name in ANSWER_FIELDS}
    out["reason"] = answer.reason.value
    return out


def _answer_from_json(data: dict[str, Any]) -> Answer:
    top_k = data.get("top_k")
    fields = {**data, "reason": Reason(data["reason"]), "top_k": None if top_k is None else [tuple(t) for t in top_k]}
    return Answer(**fields)
