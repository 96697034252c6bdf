"""What the inference thread does while no request waits: keep the latency profile current, and re-run a
share of early answers to the final exit (service.engine.guardrail). Both stop between two stages as soon
as `interrupted()` says a request (or a reload, or shutdown) is waiting: a request waits one stage at most.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from elastic_anytime.service.engine.guardrail import Guardrail
from elastic_anytime.service.engine.profile import LatencyProfile


def idle_wait_s(refresh_s: float | None, guardrail: Guardrail | None, rerun: bool) -> float | None:
    """How long the idle inference thread sleeps before a guardrail re-run (`rerun`) or a profile refresh."""
    if not rerun:
        return refresh_s
    assert guardrail is not None
    return guardrail.idle_s if refresh_s is None else min(guardrail.idle_s, refresh_s)


def refresh_profile(runner: Any, profile: LatencyProfile, interrupted: Callable[[], bool]) -> None:
    """Two batch-1 passes into the profile, the first into its cold cells (it follows an idle spell, as a
    lone request does) and the second, right after it, into the warm ones. Refused requests never run, so
    without this a stall could stay in the profile for good. Admission does not count these passes as work
    ahead: they yield at once."""
    for cold in (True, False):
        steps = runner.time_steps(1)
        try:
            for k in range(runner.num_exits):
                stage_s, head_s = next(steps)
                profile.observe(k, 1, stage_s, head_s, cold)
                if interrupted():
                    return
        finally:
            steps.close()


def rerun_guardrail(
    guardrail: Guardrail, runner: Any, observe: Callable[..., None], interrupted: Callable[[], bool]
) -> None:
    """Guardrail re-runs, one stage at a time at batch 1, until none is due or `interrupted()` (the
    interrupted re-run resumes at its next stage when the engine is idle again). Their stages are not timed
    into the profile: its cold cells hold passes after an idle spell as a lone request meets them, and these
    run after a few milliseconds."""
    while guardrail.pending:
        verdict = guardrail.step(runner)
        if verdict is not None:
            observe("agreement", verdict.exit_index, verdict.agree, verdict.expected)
        if interrupted():
            return
