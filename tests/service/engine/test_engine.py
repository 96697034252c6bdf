"""The engine with the real runner on the tiny model. Deadlines use a simulated clock that advances
10 ms per stage (a slow device) and a set time per exit-head read (0 unless a test says otherwise),
so which exit a request reaches does not depend on this machine."""

from __future__ import annotations

import asyncio
import math
import sys
import time
from collections.abc import Callable

import pytest
import torch
from engine_fixtures import STAGE_S, make_engine, tiny_checkpoint

from elastic_anytime.models.checkpoint import Checkpoint
from elastic_anytime.service.engine.admission import BacklogError, DeadlineUnmeetableError
from elastic_anytime.service.engine.front_costs import SKIP_FIRST
from elastic_anytime.service.engine.policy import Budget, Reason
from elastic_anytime.service.engine.profile import LatencyProfile
from elastic_anytime.service.engine.runner import ModelRunner
from elastic_anytime.service.engine.scheduler import Engine
from elastic_anytime.service.engine.types import Answer, EngineConfig, Job, QueueFullError, UnavailableError


@pytest.fixture(scope="module")
def checkpoint() -> Checkpoint:
    return tiny_checkpoint()


def run(engine: Engine, budgets: list[Budget], top_k: int | None = None, on_done: Callable | None = None) -> list:
    """Queue one job per budget (all before the engine starts, so they can share a batch), serve, stop."""

    async def main() -> list:
        loop = asyncio.get_running_loop()
        jobs = []
        for i, budget in enumerate(budgets):
            job = Job(torch.rand(3, 32, 32), budget, engine.clock(), loop.create_future(), top_k=top_k)
            if on_done:
                job.future.add_done_callback(lambda _, i=i: on_done(i))
            engine.submit(job)
            jobs.append(job)
        engine.start(calibrate_first=False)
        results = await asyncio.wait_for(asyncio.gather(*(j.future for j in jobs), return_exceptions=True), 30)
        await asyncio.to_thread(engine.stop, 5.0)
        return results

    return asyncio.run(main())


def test_one_batch_different_deadlines_leave_at_different_exits(checkpoint: Checkpoint) -> None:
    engine, clock, runner = make_engine(checkpoint)
    t0 = clock.now
    # exit k answers at t0 + (k + 1) * 10 ms
    budgets = [Budget(), Budget(deadline=t0 + 0.025), Budget(deadline=t0 + 0.015), Budget(deadline=t0 + 0.005)]
    answers = run(engine, budgets)
    assert runner.batch_sizes == [4]  # one batch
    assert runner.reads == [(0, 2), (1, 1), (2, 1)]  # each head read only for the rows stopping there
    assert [a.exit_index for a in answers] == [2, 1, 0, 0]
    assert [a.reason for a in answers] == [Reason.FINAL, Reason.DEADLINE, Reason.DEADLINE, Reason.DEADLINE]
    assert [a.budget_met for a in answers] == [True, True, True, False]  # the last could not make even exit 0
    assert answers[1].latency_s == pytest.approx(0.020)
    assert answers[1].slack_s == pytest.approx(0.005)
    assert answers[3].slack_s == pytest.approx(-0.005)


def test_time_check_predicts_with_the_batch_that_goes_on(checkpoint: Checkpoint) -> None:
    engine, clock, runner = make_engine(checkpoint)
    slow_when_big = LatencyProfile(runner.num_exits, [1, 2, 4, 8])
    for k in range(runner.num_exits):  # batch of 1: 10 ms a stage; batches of 3-4: 30 ms
        slow_when_big.observe(k, 1, STAGE_S)
        slow_when_big.observe(k, 4, 3 * STAGE_S)
    engine.profile = slow_when_big
    t0 = clock.now
    first = runner.exit_mflops[0]
    budgets = [Budget(max_mflops=first)] * 3 + [Budget(deadline=t0 + 0.025)]
    answers = run(engine, budgets)
    # the three compute-capped requests leave after exit 0, so the last one is predicted alone (10 ms)
    assert [a.exit_index for a in answers] == [0, 0, 0, 1]
    assert answers[3].budget_met


def test_one_batch_different_compute_budgets(checkpoint: Checkpoint) -> None:
    engine, _, runner = make_engine(checkpoint)
    mflops = runner.exit_mflops
    budgets = [Budget(max_mflops=mflops[2]), Budget(max_mflops=mflops[1]), Budget(max_mflops=mflops[0] / 2)]
    answers = run(engine, budgets, top_k=3)
    assert [a.exit_index for a in answers] == [2, 1, 0]
    # no earlier head was read for any of them: each spent the direct cost of its exit
    direct = runner.direct_mflops
    assert [a.mflops for a in answers] == [direct[2], direct[1], direct[0]]
    assert answers[0].mflops <= mflops[2] and answers[1].mflops <= mflops[1]
    assert [a.reason for a in answers] == [Reason.FINAL, Reason.COMPUTE, Reason.COMPUTE]
    for a in answers:
        assert len(a.top_k) == 3 and a.top_k[0] == (a.class_id, pytest.approx(a.confidence))
        assert a.top_k[0][1] >= a.top_k[1][1] >= a.top_k[2][1]


def test_confidence_stops_at_exit_zero(checkpoint: Checkpoint) -> None:
    engine, _, _ = make_engine(checkpoint)
    # with 10 classes the top probability is always >= 0.1
    answers = run(engine, [Budget(min_confidence=0.1), Budget()])
    assert [a.exit_index for a in answers] == [0, 2]
    assert answers[0].reason is Reason.CONFIDENT


def test_earliest_deadline_first(checkpoint: Checkpoint) -> None:
    engine, clock, runner = make_engine(checkpoint, max_batch_size=1)
    t0 = clock.now
    deadlines = [t0 + 5.0, t0 + 1.0, None, t0 + 3.0, t0 + 2.0, None]
    order: list[int] = []
    run(engine, [Budget(deadline=d) for d in deadlines], on_done=order.append)
    assert order == [1, 4, 3, 0, 2, 5]  # by deadline; no deadline last, in arrival order
    assert runner.batch_sizes == [1] * 6


def test_full_queue_rejects(checkpoint: Checkpoint) -> None:
    engine, clock, _ = make_engine(checkpoint, queue_limit=2)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        jobs = [Job(torch.rand(3, 32, 32), Budget(), clock(), loop.create_future()) for _ in range(3)]
        engine.submit(jobs[0])
        engine.submit(jobs[1])
        with pytest.raises(QueueFullError):
            engine.submit(jobs[2])
        assert engine.queue_depth == 2
        engine.start(calibrate_first=False)
        answers = await asyncio.gather(jobs[0].future, jobs[1].future)
        assert all(isinstance(a, Answer) for a in answers)
        await asyncio.to_thread(engine.stop, 5.0)
        with pytest.raises(UnavailableError):  # closed: nothing new gets in
            engine.submit(jobs[2])

    asyncio.run(main())


def test_stop_answers_everything_queued(checkpoint: Checkpoint) -> None:
    engine, _, _ = make_engine(checkpoint, max_batch_size=2)

    async def main() -> list:
        loop = asyncio.get_running_loop()
        jobs = [Job(torch.rand(3, 32, 32), Budget(), engine.clock(), loop.create_future()) for _ in range(7)]
        for job in jobs:
            engine.submit(job)
        engine.start(calibrate_first=False)
        await asyncio.to_thread(engine.stop, 10.0)  # stop at once: the queue still drains
        return await asyncio.gather(*(j.future for j in jobs))

    answers = asyncio.run(main())
    assert len(answers) == 7 and all(a.exit_index == 2 for a in answers)


def submit_now(engine: Engine, budget: Budget) -> BaseException | None:
    """Submit one job to a stopped engine (nothing runs); the admission error, if any."""

    async def main() -> BaseException | None:
        job = Job(torch.rand(3, 32, 32), budget, engine.clock(), asyncio.get_running_loop().create_future())
        try:
            engine.submit(job)
        except DeadlineUnmeetableError as err:
            return err
        return None

    return asyncio.run(main())


def test_a_deadline_that_exit_0_cannot_meet_is_refused_on_arrival(checkpoint: Checkpoint) -> None:
    engine, clock, _ = make_engine(checkpoint, reject_unmeetable=True)
    refused = submit_now(engine, Budget(deadline=clock.now + 0.005))  # exit 0 takes 10 ms
    assert type(refused) is DeadlineUnmeetableError and "10.00 ms" in str(refused)
    assert engine.queue_depth == 0
    assert submit_now(engine, Budget(deadline=clock.now + 0.010)) is None and engine.queue_depth == 1
    assert submit_now(engine, Budget()) is None  # no deadline: never refused
    # a budget that an idle server meets, most of it spent reading the request: with nothing ahead it is
    # served (a 503 would say the server is busy, and it is not); with another request being read
    # alongside, that is overload
    engine.admit(Budget(deadline=clock.now + 0.015), received=clock.now)
    with pytest.raises(BacklogError, match=r"2 other requests in the engine"):  # the two queued above
        engine.admit(Budget(deadline=clock.now + 0.007), received=clock.now - 0.008)
    engine, clock, _ = make_engine(checkpoint, reject_unmeetable=True)  # an idle one
    engine.admit(Budget(deadline=clock.now + 0.007), received=clock.now - 0.008)
    reading_another = r"front end is reading 1 other requests.* 8\.0 ms since it arrived"
    with engine.arriving(), engine.arriving(), pytest.raises(BacklogError, match=reading_another):
        engine.admit(Budget(deadline=clock.now + 0.007), received=clock.now - 0.008)
    assert not engine.can_meet(Budget(deadline=clock.now + 0.005))
    assert engine.can_meet(Budget(deadline=clock.now + 0.010))


def test_a_deadline_behind_a_backlog_is_refused_as_overload(checkpoint: Checkpoint) -> None:
    engine, clock, _ = make_engine(checkpoint, reject_unmeetable=True, max_batch_size=2)
    # 40 ms budgets; exit 0 takes 10 ms per batch of 2: eight fit (four batches), the ninth does not
    admitted = [submit_now(engine, Budget(deadline=clock.now + 0.040)) for _ in range(8)]
    assert admitted == [None] * 8
    refused = submit_now(engine, Budget(deadline=clock.now + 0.040))
    assert isinstance(refused, BacklogError) and "8 requests are queued ahead" in str(refused)
    # an earlier deadline goes ahead of them (EDF), so their backlog does not count against it
    assert submit_now(engine, Budget(deadline=clock.now + 0.012)) is None
    assert submit_now(engine, Budget(deadline=clock.now + 0.050)) is None  # 9 ahead: 40 ms + its own 10
    assert engine.queue_depth == 10


def test_a_job_that_waited_past_its_first_exit_is_refused_not_run(checkpoint: Checkpoint) -> None:
    # batches of one: the 11 ms job goes first (EDF) and takes 10 ms; the 15 ms one then has 5 ms left,
    # and its exit 0 needs 10: refused at dispatch, not run late. The 100 ms one waited for nothing
    # but its turn, and 80 ms are left: served.
    engine, clock, runner = make_engine(checkpoint, reject_unmeetable=True, max_batch_size=1)

    async def main() -> list:
        loop = asyncio.get_running_loop()
        jobs = [Job(torch.rand(3, 32, 32), Budget(deadline=clock.now + s), clock.now, loop.create_future())
                for s in (0.015, 0.011)]  # fmt: skip
        for job in jobs:  # the 15 ms one first: nothing is ahead of it when it arrives
            engine.submit(job)
        engine.start(calibrate_first=False)
        results = await asyncio.wait_for(asyncio.gather(*(j.future for j in jobs), return_exceptions=True), 30)
        await asyncio.to_thread(engine.stop, 5.0)
        return results

    late, served = asyncio.run(main())
    assert isinstance(late, BacklogError) and "waited 10.0 ms in the queue behind other requests" in str(late)
    assert isinstance(served, Answer) and served.exit_index == 0
    assert runner.batch_sizes == [1]  # the late one never reached the model


def test_dispatch_plans_the_typical_way_out_not_the_one_planned_for_going_deeper(checkpoint: Checkpoint) -> None:
    # the 15 ms job waited 10 ms behind the 11 ms one, and its exit 0 needs 10 more: refused above. This one
    # has 25 ms: 5 to spare. Its front end planned 40 ms for the way out of a deeper answer (its handler
    # waited on a loop busy reading a burst), but that loop is free again when its exit-0 answer comes:
    # served, not refused late with a false 503
    engine, clock, runner = make_engine(checkpoint, reject_unmeetable=True, max_batch_size=1)

    async def main() -> list:
        loop = asyncio.get_running_loop()
        patient = Job(torch.rand(3, 32, 32), Budget(deadline=clock.now + 0.025), clock.now, loop.create_future(),
                      out_s=0.040)  # fmt: skip
        urgent = Job(torch.rand(3, 32, 32), Budget(deadline=clock.now + 0.011), clock.now, loop.create_future())
        engine.submit(patient)
        engine.submit(urgent)
        engine.start(calibrate_first=False)
        results = await asyncio.wait_for(asyncio.gather(patient.future, urgent.future, return_exceptions=True), 30)
        await asyncio.to_thread(engine.stop, 5.0)
        return results

    patient, urgent = asyncio.run(main())
    assert isinstance(urgent, Answer) and isinstance(patient, Answer)
    assert patient.exit_index == 0 and patient.budget_met  # no deeper: its planned way out keeps it at exit 0
    assert runner.batch_sizes == [1, 1]


def test_a_job_that_waited_for_nothing_is_not_refused_at_dispatch(checkpoint: Checkpoint) -> None:
    # queued on an idle engine; the batch that takes it is the next one, whenever it starts: no work
    # ahead of it made it wait, so it is served (late, if it must), never refused with a false 503
    engine, clock, runner = make_engine(checkpoint, reject_unmeetable=True)

    async def main() -> Answer:
        job = Job(torch.rand(3, 32, 32), Budget(deadline=clock.now + 0.012), clock.now, loop_future())
        engine.submit(job)
        clock.now += 0.005  # the inference thread took its time to wake up
        engine.start(calibrate_first=False)
        answer = await asyncio.wait_for(job.future, 30)
        await asyncio.to_thread(engine.stop, 5.0)
        return answer

    def loop_future() -> asyncio.Future:
        return asyncio.get_running_loop().create_future()

    answer = asyncio.run(main())
    assert answer.exit_index == 0 and not answer.budget_met
    assert runner.batch_sizes == [1]


def test_observed_stage_times_update_the_profile(checkpoint: Checkpoint) -> None:
    engine, _, runner = make_engine(checkpoint)
    profile, last = engine.profile, runner.num_exits - 1
    stages = [profile.sample_count(k, 2) for k in range(runner.num_exits)]
    heads = [profile.sample_count(k, 2, "head") for k in range(runner.num_exits)]
    run(engine, [Budget(), Budget()])
    assert [profile.sample_count(k, 2) for k in range(runner.num_exits)] == [n + 1 for n in stages]
    # only the final head was read (nobody could stop earlier), so only its time was observed
    assert [profile.sample_count(k, 2, "head") for k in range(runner.num_exits)] == [
        n + (k == last) for k, n in enumerate(heads)
    ]


def test_heads_are_read_only_where_someone_may_stop(checkpoint: Checkpoint) -> None:
    engine, _, runner = make_engine(checkpoint)
    # the first wants 99% confidence (an untrained 10-class model never gets there): every head is
    # read for it alone; the second can only stop at the final exit
    answers = run(engine, [Budget(min_confidence=0.99), Budget()])
    assert runner.reads == [(0, 1), (1, 1), (2, 2)]
    assert [a.exit_index for a in answers] == [2, 2]
    direct, heads = runner.direct_mflops, runner.head_mflops
    assert answers[0].mflops == pytest.approx(direct[2] + heads[0] + heads[1])  # the compute it really used
    assert answers[1].mflops == direct[2]


def test_a_head_read_for_others_delays_those_going_on(checkpoint: Checkpoint) -> None:
    # stages take 10 ms, head reads 5 ms: alone, a 25 ms budget reaches exit 1 (stage 0, stage 1, head 1)
    engine, clock, runner = make_engine(checkpoint, head_s=0.005)
    alone = run(engine, [Budget(deadline=clock.now + 0.025)])[0]
    assert (alone.exit_index, alone.budget_met, alone.latency_s) == (1, True, pytest.approx(0.025))
    assert runner.reads == [(1, 1)]
    # with a confidence-seeking neighbour, head 0 is read for it first; waiting for that read would
    # make exit 1 late, so the policy stops the timed request at exit 0, in time
    engine, clock, runner = make_engine(checkpoint, head_s=0.005)
    answers = run(engine, [Budget(deadline=clock.now + 0.025), Budget(min_confidence=0.99)])
    assert (answers[0].exit_index, answers[0].reason, answers[0].budget_met) == (0, Reason.DEADLINE, True)
    assert answers[0].latency_s == pytest.approx(0.015)
    assert runner.reads[0] == (0, 2)


def test_a_batch_stops_going_deeper_when_a_waiting_request_needs_the_time(checkpoint: Checkpoint) -> None:
    # one request per batch. A (deadline 35 ms) runs first and alone would reach its final exit at 30 ms;
    # B (38 ms) waits behind it and needs 10 ms for its first exit. A going past exit 1 would make B late
    engine, clock, _ = make_engine(checkpoint, max_batch_size=1)
    t0 = clock.now
    first, second = run(engine, [Budget(deadline=t0 + 0.035), Budget(deadline=t0 + 0.038)])
    assert (first.exit_index, first.reason, first.budget_met) == (1, Reason.DEADLINE, True)
    assert (second.exit_index, second.budget_met) == (0, True)
    assert second.latency_s == pytest.approx(0.030)


def test_waiting_requests_without_deadline_do_not_stop_a_batch(checkpoint: Checkpoint) -> None:
    engine, clock, runner = make_engine(checkpoint, max_batch_size=1)
    first, second = run(engine, [Budget(deadline=clock.now + 0.035), Budget()])
    assert first.exit_index == runner.num_exits - 1 and second.exit_index == runner.num_exits - 1


def test_a_lone_request_does_not_wait_for_company(checkpoint: Checkpoint) -> None:
    # max-wait is 5 s; nothing else is arriving, so the batch starts at once
    engine, _, runner = make_engine(checkpoint, max_wait_s=5.0)
    started = time.monotonic()
    answers = run(engine, [Budget()])
    assert answers[0].exit_index == runner.num_exits - 1
    assert time.monotonic() - started < 2.5


def test_requests_on_their_way_are_waited_for(checkpoint: Checkpoint) -> None:
    engine, _, runner = make_engine(checkpoint, max_wait_s=5.0)

    async def main() -> list:
        loop = asyncio.get_running_loop()
        jobs = [Job(torch.rand(3, 32, 32), Budget(), engine.clock(), loop.create_future()) for _ in range(3)]
        with engine.arriving() as on_its_way:  # the HTTP layer is still reading the third request
            engine.submit(jobs[0])
            engine.submit(jobs[1])
            engine.start(calibrate_first=False)
            await asyncio.sleep(0.2)
            engine.submit(jobs[2], on_its_way)
        answers = await asyncio.wait_for(asyncio.gather(*(j.future for j in jobs)), 30)
        await asyncio.to_thread(engine.stop, 5.0)
        return answers

    started = time.monotonic()
    assert len(asyncio.run(main())) == 3
    assert runner.batch_sizes == [3]  # the batcher waited for the third
    assert time.monotonic() - started < 4.0  # and started as soon as it came, not after max-wait


def test_a_request_that_never_comes_ends_the_wait(checkpoint: Checkpoint) -> None:
    engine, _, runner = make_engine(checkpoint, max_wait_s=5.0)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        job = Job(torch.rand(3, 32, 32), Budget(), engine.clock(), loop.create_future())
        with engine.arriving():  # announced, then refused before reaching the engine (a bad image, say)
            engine.submit(job)
            engine.start(calibrate_first=False)
            await asyncio.sleep(0.2)
        await asyncio.wait_for(job.future, 30)
        await asyncio.to_thread(engine.stop, 5.0)

    started = time.monotonic()
    asyncio.run(main())
    assert runner.batch_sizes == [1]
    assert time.monotonic() - started < 4.0


class BrokenObserver:
    def __getattr__(self, name: str) -> Callable:
        def fail(*args: object) -> None:
            raise RuntimeError(f"metrics backend down ({name})")

        return fail


def test_a_failing_observer_never_fails_a_request(checkpoint: Checkpoint) -> None:
    engine, _, _ = make_engine(checkpoint)
    engine.observer = BrokenObserver()
    answers = run(engine, [Budget(), Budget(max_mflops=1.0)])
    assert [a.exit_index for a in answers] == [2, 0]


def test_calibration_sets_ready(checkpoint: Checkpoint) -> None:
    runner = ModelRunner(checkpoint, torch.device("cpu"))
    profile = LatencyProfile(runner.num_exits, [1, 2])
    engine = Engine(runner, profile, EngineConfig(warmup_runs=1, calibration_runs=3))
    assert not engine.accepting
    engine.start()
    assert engine.ready.wait(30)
    assert engine.accepting and profile.calibrated
    assert all(profile.snapshot()[k]["2"]["samples"] == 3 for k in range(runner.num_exits))
    assert 0 < profile.predict_path(runner.num_exits - 1, 1) < math.inf
    engine.stop(5.0)
    assert not engine.accepting


def test_answers_reach_the_loop_through_its_channel(checkpoint: Checkpoint) -> None:
    engine, _, _ = make_engine(checkpoint)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.call_soon_threadsafe = None  # type: ignore[method-assign]  # the fallback must not be needed
        jobs = [Job(torch.rand(3, 32, 32), Budget(), engine.clock(), loop.create_future()) for _ in range(3)]
        for job in jobs:
            engine.submit(job)
        channel = engine.sink._channels[loop]
        engine.start(calibrate_first=False)
        answers = await asyncio.wait_for(asyncio.gather(*(j.future for j in jobs)), 30)
        assert all(isinstance(a, Answer) for a in answers)
        del loop.call_soon_threadsafe  # stop() closes the channel on its loop through it
        await asyncio.to_thread(engine.stop, 5.0)
        await asyncio.sleep(0.05)
        assert channel.closed and not engine.sink._channels

    asyncio.run(main())


def test_start_shortens_the_gil_switch_interval(checkpoint: Checkpoint) -> None:
    previous = sys.getswitchinterval()
    try:
        sys.setswitchinterval(0.005)
        engine, _, _ = make_engine(checkpoint, gil_switch_interval_s=0.0005)
        engine.start(calibrate_first=False)
        assert sys.getswitchinterval() == pytest.approx(0.0005)
        engine.stop(5.0)
        sys.setswitchinterval(0.0001)  # never lengthened
        engine, _, _ = make_engine(checkpoint, gil_switch_interval_s=0.0005)
        engine.start(calibrate_first=False)
        assert sys.getswitchinterval() == pytest.approx(0.0001)
        engine.stop(5.0)
    finally:
        sys.setswitchinterval(previous)


def test_an_idle_engine_replaces_an_inflated_profile_and_still_serves(checkpoint: Checkpoint) -> None:
    # a calibration that met a stall: exit 0 predicted at 10 s, so every tight budget would be refused
    runner = ModelRunner(checkpoint, torch.device("cpu"))
    profile = LatencyProfile(runner.num_exits, [1, 2, 4, 8], window=8)
    for k in range(runner.num_exits):
        for b in (1, 2, 4, 8):
            profile.observe(k, b, 10.0, 0.0)
    engine = Engine(runner, profile, EngineConfig(max_wait_s=0.0, reject_unmeetable=True, idle_refresh_s=0.01))
    tight = Budget(deadline=engine.clock() + 1.0)
    assert not engine.can_meet(tight)

    async def main() -> Answer:
        engine.start(calibrate_first=False)
        deadline = time.monotonic() + 20
        while profile.predict(0, 1, "p99") > 1.0:  # idle passes push the stalled samples out of the window
            assert time.monotonic() < deadline, "the idle refresh never replaced the inflated profile"
            await asyncio.sleep(0.02)
        job = Job(torch.rand(3, 32, 32), Budget(deadline=engine.clock() + 1.0), engine.clock(), loop_future())
        engine.submit(job)  # admitted now; a refresh pass in progress gives way to it
        answer = await asyncio.wait_for(job.future, 10)
        await asyncio.to_thread(engine.stop, 5.0)
        return answer

    def loop_future() -> asyncio.Future:
        return asyncio.get_running_loop().create_future()

    answer = asyncio.run(main())
    assert answer.budget_met and answer.exit_index == runner.num_exits - 1
    assert profile.predict(runner.num_exits - 1, 2, "p99") == 10.0  # only batch 1 is refreshed


def test_the_idle_floor_is_a_typical_cold_exit_0(checkpoint: Checkpoint) -> None:
    # 422 only below what an idle server typically meets: exit 0 after an idle spell (the median of the
    # cold passes) plus the front end's cost for a lone request. Warm passes take 1 ms; cold ones 4 ms,
    # 1 in 20 of them 9 ms: a budget between the median and that tail is taken, not refused.
    engine, clock, _ = make_engine(checkpoint, reject_unmeetable=True)
    profile = LatencyProfile(engine.runner.num_exits, [1, 2, 4, 8], window=100)
    for i in range(100):
        profile.observe(0, 1, 0.001, 0.0)
        profile.observe(0, 1, 0.009 if i % 20 == 0 else 0.004, 0.0, True)
    engine.profile = profile
    refused = submit_now(engine, Budget(deadline=clock.now + 0.003))
    assert type(refused) is DeadlineUnmeetableError and "exit 0 takes 4.00 ms after an idle spell" in str(refused)
    for _ in range(SKIP_FIRST + 20):
        engine.front_costs.observe_decode(0.001, lone=True)
    refused = submit_now(engine, Budget(deadline=clock.now + 0.0045))
    assert type(refused) is DeadlineUnmeetableError and "typically needs 5.00 ms" in str(refused)
    assert submit_now(engine, Budget(deadline=clock.now + 0.0055)) is None  # above the floor, below the tail: taken
    # the engine is not idle now: behind the queued one, a warm exit 0 at batch 2 (2 ms) fits 6 ms
    assert submit_now(engine, Budget(deadline=clock.now + 0.006)) is None
    assert engine.queue_depth == 2


def test_a_request_arriving_mid_stage_waits_for_the_rest_of_it(checkpoint: Checkpoint) -> None:
    # stages take 10 ms and are never interrupted: a request arriving as stage 1 starts can begin its exit 0
    # (10 ms) only 10 ms later, so a 15 ms budget is overload then, a 25 ms one is not
    engine, clock, runner = make_engine(checkpoint, reject_unmeetable=True)
    seen = []
    stage = runner.stage

    def probing_stage(index, features):  # type: ignore[no-untyped-def]
        if index == 1:
            seen.append([engine.can_meet(Budget(deadline=clock.now + s)) for s in (0.015, 0.025)])
        return stage(index, features)

    runner.stage = probing_stage  # type: ignore[method-assign]
    run(engine, [Budget()])
    assert seen == [[False, True]]
    assert engine.can_meet(Budget(deadline=clock.now + 0.015))  # idle again: exit 0 alone fits


def test_stage_0_is_timed_with_the_batch_copy(checkpoint: Checkpoint) -> None:
    # the copy of the inputs to the device precedes stage 0; calibration counts it there too
    engine, clock, runner = make_engine(checkpoint)
    batch = runner.batch

    def slow_batch(tensors):  # type: ignore[no-untyped-def]
        clock.now += 0.003
        return batch(tensors)

    runner.batch = slow_batch  # type: ignore[method-assign]
    run(engine, [Budget()])
    # exit 0 at batch 1: the calibrated 10 ms and this pass's 13 ms (no head read for it: 0 ms)
    assert engine.profile.snapshot()[0]["1"]["p99_ms"] == pytest.approx(13.0)


def test_the_engine_keeps_room_for_the_hand_off(checkpoint: Checkpoint) -> None:
    # exit k answers at t0 + (k + 1) * 10 ms: a 25 ms budget reaches exit 1, unless answers take 8 ms more
    # to reach their handlers (20 + 8 > 25); exit 0 still fits (10 + 8)
    engine, clock, _ = make_engine(checkpoint)
    assert run(engine, [Budget(deadline=clock.now + 0.025)])[0].exit_index == 1
    engine, clock, _ = make_engine(checkpoint)
    for _ in range(SKIP_FIRST + 20):
        engine.front_costs.observe_out(0.008, lone=True)
    assert engine.handoff_s == pytest.approx(0.008) and engine.margin_s == pytest.approx(0.008)
    (answer,) = run(engine, [Budget(deadline=clock.now + 0.025)])
    assert answer.exit_index == 0 and answer.reason is Reason.DEADLINE


def test_admission_counts_the_hand_off_while_others_keep_the_loop_busy(checkpoint: Checkpoint) -> None:
    engine, clock, _ = make_engine(checkpoint, reject_unmeetable=True)
    t0 = clock.now
    for _ in range(SKIP_FIRST + 20):
        engine.front_costs.observe_out(0.008, lone=False)  # answers reach their responses 8 ms after exit 0 lately
    engine.admit(Budget(deadline=t0 + 0.015), t0)  # alone on the server: its answer finds the loop idle
    loop = asyncio.new_event_loop()
    for _ in range(2):  # others waiting (without deadlines: not ahead of it), so the loop is busy
        engine.submit(Job(torch.rand(3, 32, 32), Budget(), t0, loop.create_future()))
    with pytest.raises(BacklogError, match=r"2 other requests in the engine .* the answer 8\.0 ms to get out"):
        engine.admit(Budget(deadline=t0 + 0.015), t0)
    engine.admit(Budget(deadline=t0 + 0.019), t0)
    loop.close()


def test_no_room_for_the_hand_off_when_switched_off(checkpoint: Checkpoint) -> None:
    engine, _, _ = make_engine(checkpoint, handoff_quantile=None)
    engine.front_costs.observe_out(0.008, lone=False)
    assert engine.handoff_s == 0.0
