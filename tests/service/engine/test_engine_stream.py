"""Streamed jobs (Job.progress) in the engine: every exit's head is read for them, what each exit it goes
on from would answer reaches its sink in order and before its answer, and jobs that are not streamed are
run exactly as before. The tiny model on the simulated device of engine_fixtures (10 ms per stage)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from types import SimpleNamespace

import pytest
import torch
from engine_fixtures import STAGE_S, make_engine, tiny_checkpoint

from elastic_anytime.models.checkpoint import Checkpoint
from elastic_anytime.service.engine.admission import FrontEnd
from elastic_anytime.service.engine.policy import Budget, Reason
from elastic_anytime.service.engine.profile import LatencyProfile
from elastic_anytime.service.engine.scheduler import Engine
from elastic_anytime.service.engine.types import Answer, EngineConfig, Job
from elastic_anytime.service.worker.client import EngineProcess
from elastic_anytime.service.worker.host import Host, _Events, _Reply, _Uplink
from elastic_anytime.service.worker.messages import from_header


@pytest.fixture(scope="module")
def checkpoint() -> Checkpoint:
    return tiny_checkpoint()


@dataclasses.dataclass
class Streamed:
    """What a job's sink and future saw, in the order the event loop saw it."""

    seen: list[tuple[str, Answer | BaseException]] = dataclasses.field(default_factory=list)

    def sink(self, partial: Answer) -> None:
        self.seen.append(("progress", partial))

    def ended(self, future: asyncio.Future) -> None:
        self.seen.append(("end", future.exception() or future.result()))

    @property
    def partials(self) -> list[Answer]:
        return [a for kind, a in self.seen if kind == "progress"]  # type: ignore[misc]

    @property
    def answer(self) -> Answer:
        kind, answer = self.seen[-1]
        assert kind == "end" and isinstance(answer, Answer), self.seen
        return answer


def serve(engine: Engine, jobs: list[tuple[Budget, bool]], top_k: int | None = None) -> list[Streamed]:
    """Queue one job per (budget, streamed) before the engine starts (one batch), serve them, stop."""

    async def main() -> list[Streamed]:
        loop = asyncio.get_running_loop()
        seen, futures = [], []
        for budget, streamed in jobs:
            record = Streamed()
            job = Job(torch.rand(3, 32, 32), budget, engine.clock(), loop.create_future(), top_k=top_k,
                      progress=record.sink if streamed else None)  # fmt: skip
            job.future.add_done_callback(record.ended)
            engine.submit(job)
            seen.append(record)
            futures.append(job.future)
        engine.start(calibrate_first=False)
        await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), 30)
        await asyncio.sleep(0)  # the done callbacks
        await asyncio.to_thread(engine.stop, 5.0)
        return seen

    return asyncio.run(main())


def test_a_streamed_job_gets_every_exit_in_order_then_its_answer(checkpoint: Checkpoint) -> None:
    engine, _, runner = make_engine(checkpoint)
    (record,) = serve(engine, [(Budget(), True)], top_k=3)
    last = runner.num_exits - 1
    assert [kind for kind, _ in record.seen] == ["progress"] * last + ["end"]
    assert [p.exit_index for p in record.partials] == list(range(last))
    assert all(p.reason is Reason.CONTINUE and p.top_k is not None and len(p.top_k) == 3 for p in record.partials)
    assert record.answer.exit_index == last and record.answer.reason is Reason.FINAL
    # every head on the way is read for it, and paid for: the MFLOPs spent so far grow by stage and head
    assert runner.reads == [(k, 1) for k in range(runner.num_exits)]
    expected = [runner.direct_mflops[k] + sum(runner.head_mflops[:k]) for k in range(runner.num_exits)]
    spent = [p.mflops for p in record.partials] + [record.answer.mflops]
    assert spent == pytest.approx(expected)
    assert record.answer.mflops == pytest.approx(runner.exit_mflops[last])
    latencies = [p.latency_s for p in record.partials] + [record.answer.latency_s]
    assert latencies == sorted(latencies) and latencies[0] == pytest.approx(STAGE_S)


def test_a_streamed_job_stops_at_its_deadline_as_any_other(checkpoint: Checkpoint) -> None:
    engine, clock, runner = make_engine(checkpoint)
    assert runner.num_exits == 3
    budget = Budget(deadline=clock.now + 2 * STAGE_S + 0.001)  # time for exits 0 and 1, not the final one
    streamed, plain = serve(engine, [(budget, True), (budget, False)])
    assert [p.exit_index for p in streamed.partials] == [0]
    assert streamed.answer.exit_index == plain.answer.exit_index == 1
    assert streamed.answer.reason is plain.answer.reason is Reason.DEADLINE
    assert streamed.answer.budget_met and plain.partials == []
    # the head of exit 0 is read for the streamed one only; exit 1 answers both
    assert runner.reads == [(0, 1), (1, 2)]


def test_a_job_that_is_not_streamed_is_run_as_before(checkpoint: Checkpoint) -> None:
    engine, _, runner = make_engine(checkpoint)
    (plain,) = serve(engine, [(Budget(), False)])
    assert plain.partials == [] and plain.answer.exit_index == runner.num_exits - 1
    assert runner.reads == [(runner.num_exits - 1, 1)]  # no head on the way: only the one that answers
    assert plain.answer.mflops == pytest.approx(runner.direct_mflops[-1])


def test_a_confident_streamed_job_ends_where_its_confidence_is_reached(checkpoint: Checkpoint) -> None:
    engine, _, _ = make_engine(checkpoint)
    (record,) = serve(engine, [(Budget(min_confidence=1e-6), True)])
    assert record.partials == [] and record.answer.exit_index == 0 and record.answer.reason is Reason.CONFIDENT


def test_a_cancelled_streamed_job_gets_nothing_more(checkpoint: Checkpoint) -> None:
    engine, _, runner = make_engine(checkpoint)

    async def main() -> Streamed:
        loop = asyncio.get_running_loop()
        record = Streamed()

        def sink(partial: Answer) -> None:
            record.sink(partial)
            engine.cancel(job)  # the client leaves after exit 0's event

        job = Job(torch.rand(3, 32, 32), Budget(), engine.clock(), loop.create_future(), progress=sink)
        job.future.add_done_callback(record.ended)
        engine.submit(job)
        engine.start(calibrate_first=False)
        await asyncio.wait([job.future], timeout=30)
        await asyncio.to_thread(engine.stop, 5.0)
        return record

    record = asyncio.run(main())
    assert [p.exit_index for p in record.partials] == [0]
    assert [kind for kind, _ in record.seen] == ["progress", "end"]
    assert runner.reads[-1][0] < runner.num_exits - 1  # dropped from its batch before the last exit


class FakeOutbox:
    """The answer pipe's writer: keeps each message as the front end decodes it (service.worker.messages)."""

    def __init__(self) -> None:
        self.sent: list[tuple] = []

    def send(self, header: dict) -> None:
        self.sent.append(from_header(json.loads(json.dumps(header))))  # through JSON, as on the wire


def test_the_inference_process_sends_progress_up_before_the_answer(checkpoint: Checkpoint) -> None:
    engine, _, runner = make_engine(checkpoint)
    outbox = FakeOutbox()
    uplink = _Uplink(outbox, _Events(), [], lambda: True)
    reply = _Reply(7, uplink)
    engine.sink.deliver = uplink.deliver  # as Engine.feed_from wires it in the inference process
    job = Job(torch.rand(3, 32, 32), Budget(), engine.clock(), reply, progress=reply.progress)
    engine._run([job])
    kinds = [(m[0], m[1]) for m in outbox.sent]
    assert kinds == [("progress", 7)] * (runner.num_exits - 1) + [("answer", 7)]
    assert [m[2].exit_index for m in outbox.sent] == list(range(runner.num_exits))
    assert all(m[2].runner is None for m in outbox.sent)  # the server labels them with its own copy


def test_the_inference_process_streams_only_the_jobs_sent_as_streamed(checkpoint: Checkpoint) -> None:
    engine, _, _ = make_engine(checkpoint)
    host = Host.__new__(Host)  # its job decoding alone, without a pipe
    host.engine = engine
    connection = SimpleNamespace(uplink=_Uplink(FakeOutbox(), _Events(), [], lambda: True), replies={}, source=1)
    header = {"id": 1, "shape": [3, 32, 32], "deadline": None, "max_mflops": None, "min_confidence": None,
              "received": 0.0, "top_k": None, "front": [0.0] * len(dataclasses.fields(FrontEnd))}  # fmt: skip
    data = torch.zeros(3, 32, 32).numpy().tobytes()
    host.submit(connection, header, data)
    host.submit(connection, {**header, "id": 2, "stream": True}, data)
    plain, streamed = sorted(engine._heap, key=lambda j: j.seq)
    assert plain.progress is None
    assert streamed.progress is not None and streamed.progress.__self__ is streamed.future


def test_the_server_routes_progress_to_the_streamed_request_until_it_ends() -> None:
    engine = EngineProcess({}, LatencyProfile(3, [1, 2, 4, 8]), EngineConfig())
    loop = asyncio.new_event_loop()
    got: list[Answer] = []
    streamed = Job(torch.zeros(3, 32, 32), Budget(), 0.0, loop.create_future(), progress=got.append)
    plain = Job(torch.zeros(3, 32, 32), Budget(), 0.0, loop.create_future())
    engine.submit(streamed)  # not started: nothing is written, but the jobs count as sent
    engine.submit(plain)
    partial = Answer(class_id=1, confidence=0.5, exit_index=0, mflops=1.0, latency_s=0.01, queue_s=0.0,
                     budget_met=True, reason=Reason.CONTINUE)  # fmt: skip
    engine._handle(("progress", streamed.wire_id, partial, []))
    engine._handle(("progress", plain.wire_id, partial, []))  # not streamed: nowhere to go
    assert got == [partial]
    engine._handle(("answer", streamed.wire_id, dataclasses.replace(partial, reason=Reason.FINAL), []))
    engine._handle(("progress", streamed.wire_id, partial, []))  # late: it has its answer already
    assert got == [partial] and streamed.future.result().reason is Reason.FINAL
    assert engine._sinks == {}
    loop.close()
