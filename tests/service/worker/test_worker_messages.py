"""The engine process's messages up to a front end (service.worker.messages): every kind survives the wire's
JSON unchanged, Answers included, and a message that is not the protocol's is refused, not guessed at."""

from __future__ import annotations

import json

import pytest

from elastic_anytime.service.engine.policy import Reason
from elastic_anytime.service.engine.types import Answer
from elastic_anytime.service.worker.messages import FIELDS, MessageError, from_header, to_header

ANSWER = Answer(class_id=3, confidence=0.875, exit_index=2, mflops=122.5, latency_s=0.0042, queue_s=0.0003,
                budget_met=True, reason=Reason.DEADLINE, slack_s=-0.0001, top_k=[(3, 0.875), (5, 0.1)],
                enqueued_at=12345.678)  # fmt: skip
EVENTS = [("metric", "stage", (0, 4, 0.0011)), ("profile", "observe", (1, 8, 0.002, 0.0001, False))]
RESTORE = [("profile", "restore", ([["stage", 0, 1, 1.5, 0.001]],))]
MESSAGES = [
    ("ready", {"checkpoint": "/m/a", "num_exits": 5, "device": "cuda:0"}, RESTORE),
    ("answer", 7, ANSWER, EVENTS),
    ("progress", 7, ANSWER, []),
    ("fail", 8, "BacklogError", "it waited 3.0 ms in the queue", EVENTS),
    ("events", EVENTS),
    ("reloaded", None, {"checkpoint": "/m/b", "num_exits": 3, "device": "cpu", "load_s": 0.1, "calibrate_s": 0.9}, []),
    ("reloaded", [422, "invalid_checkpoint", "no elastic.json"], None, None),
    ("model", {"checkpoint": "/m/b", "num_exits": 3, "device": "cpu"}, [["head", 2, 8, 3.0, 0.0002]]),
    ("failed", "calibration failed: CUDA error"),
]  # fmt: skip


def through_the_wire(message: tuple) -> tuple:
    return from_header(json.loads(json.dumps(to_header(message))))


@pytest.mark.parametrize("message", MESSAGES, ids=[m[0] for m in MESSAGES])
def test_every_kind_survives_the_wire(message: tuple) -> None:
    back = through_the_wire(message)
    assert back[0] == message[0] and len(back) == len(message)
    for sent, got in zip(message[1:], back[1:], strict=True):
        if isinstance(sent, Answer):
            assert got == sent and isinstance(got.reason, Reason) and got.runner is None
        elif isinstance(sent, list) and sent and isinstance(sent[0], tuple):  # events: tuples again
            assert [tuple(json.loads(json.dumps(e))) for e in sent] == got
        else:
            assert json.loads(json.dumps(sent)) == got


def test_every_kind_is_tested() -> None:
    assert {m[0] for m in MESSAGES} == set(FIELDS)


def test_the_runner_stays_home() -> None:
    header = to_header(("answer", 1, Answer(**{**vars(ANSWER), "runner": object()}), []))
    assert "runner" not in header["answer"]


@pytest.mark.parametrize("bad", [("answer", 1, ANSWER), ("hello", 1), ("events",), ("failed", "a", "b")], ids=str)
def test_a_message_without_its_fields_is_refused_on_the_way_out(bad: tuple) -> None:
    with pytest.raises(MessageError):
        to_header(bad)


@pytest.mark.parametrize("bad", [{"kind": "answer", "id": 1}, {"kind": "pickle"}, {}], ids=str)
def test_a_header_without_its_fields_is_refused_on_the_way_in(bad: dict) -> None:
    with pytest.raises(MessageError):
        from_header(bad)
