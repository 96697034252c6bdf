"""service.engine.answer_sink: one way out for answers, whether a job waits on an asyncio future or a Reply;
the answers of one exit go out together at `flush`, refusals and failures at once."""

from __future__ import annotations

import asyncio
import threading

from elastic_anytime.service.engine.answer_sink import AnswerSink
from elastic_anytime.service.engine.policy import Budget, Reason
from elastic_anytime.service.engine.types import Answer, Job

ANSWER = Answer(class_id=1, confidence=0.9, exit_index=0, mflops=1.0, latency_s=0.001, queue_s=0.0,
                budget_met=True, reason=Reason.DEADLINE)  # fmt: skip


class HeldReply:
    """A Reply as the inference process has it: settled here, sent when the sink delivers."""

    def __init__(self) -> None:
        self.settled: list[tuple] = []

    def done(self) -> bool:
        return bool(self.settled)

    def settle(self, answer: Answer | None, error: BaseException | None) -> None:
        self.settled.append((answer, error))


def test_replies_of_one_exit_are_delivered_together_and_a_refusal_at_once() -> None:
    sink, deliveries = AnswerSink(), []
    sink.deliver = lambda: deliveries.append("deliver")
    first, second, refused = HeldReply(), HeldReply(), HeldReply()
    sink.settle(first, answer=ANSWER, at_once=False)
    sink.settle(second, answer=ANSWER, at_once=False)
    assert deliveries == []
    sink.flush()
    assert deliveries == ["deliver"]  # once for the whole exit
    sink.settle(refused, error=RuntimeError("refused"))
    assert deliveries == ["deliver", "deliver"]
    sink.settle(first, error=RuntimeError("too late"))  # settled already: left as it was
    assert first.settled == [(ANSWER, None)]


def test_a_future_is_resolved_on_its_own_loop_through_its_channel_after_flush() -> None:
    sink = AnswerSink()

    async def main() -> tuple[bool, Answer, list[str]]:
        loop = asyncio.get_running_loop()
        sink.open_channel(loop)
        future = loop.create_future()
        streamed: list[str] = []
        job = Job(None, Budget(), 0.0, future, progress=lambda partial: streamed.append(partial.reason.value))
        thread = threading.Thread(
            target=lambda: (sink.progress(job, ANSWER), sink.settle(future, ANSWER, at_once=False))
        )
        thread.start()
        thread.join()
        await asyncio.sleep(0.05)
        before = future.done()  # posted, not woken: nothing has run on the loop yet
        sink.flush()
        answer = await asyncio.wait_for(future, 5)
        sink.close()
        return before, answer, streamed

    before, answer, streamed = asyncio.run(main())
    assert not before and answer is ANSWER
    assert streamed == [Reason.DEADLINE.value]  # the partial went out first, with the same wake-up
