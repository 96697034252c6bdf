"""Several engine processes behind one front end (`elastic serve --engines E`: one per GPU).

The front end holds one link (`service.worker.client.EngineProcess`) per engine and offers the engine
interface over all of them: each job goes to the accepting engine with the fewest of this front end's
jobs outstanding (ties in turn), so a slow or busy device gets less. A front end knows only its own
jobs; with several front ends each spreads its own share, which sums to a spread of the whole. An
engine that is down or restarting is skipped until it says ready again; the front end is unavailable
only while none is.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from elastic_anytime.service.engine.policy import Budget
from elastic_anytime.service.engine.profile import LatencyProfile
from elastic_anytime.service.engine.types import Arrival, Job, UnavailableError
from elastic_anytime.service.worker.client import EngineProcess


def engine_links(env: dict[str, str]) -> list[dict[str, str]]:
    """The settings of each link: one per socket in ELASTIC_ENGINE_SOCKET (comma-separated)."""
    sockets = [path for path in (env.get("ELASTIC_ENGINE_SOCKET") or "").split(",") if path]
    return [{**env, "ELASTIC_ENGINE_SOCKET": path} for path in sockets] or [env]


def connect_engines(
    env: dict[str, str], new_profile: Callable[[], LatencyProfile], config: Any, observer: Any, placement: Any
) -> EngineProcess | EngineGroup:
    """The process engine of a front end: one link, or a group when the supervisor runs several engines."""
    links = engine_links(env)
    if len(links) == 1:
        return EngineProcess(links[0], new_profile(), config, observer, placement)
    return EngineGroup([EngineProcess(link, new_profile(), config, observer) for link in links])


class EngineGroup:
    """The engine interface over several engine processes (see the module's docstring)."""

    placement = None  # the engines are placed by their devices, not pinned from here

    def __init__(self, links: list[EngineProcess]) -> None:
        self.links = links
        first = links[0]
        self.config, self.clock, self.front_costs = first.config, first.clock, first.front_costs
        for link in links[1:]:  # one front end: one measurement of its own costs
            link.front_costs = self.front_costs
        self._turn = itertools.count()
        self._owner: dict[int, EngineProcess] = {}  # id(job) → the link it went to, until it is answered

    # -- what the routes read ------------------------------------------------------------------------

    @property
    def profile(self) -> LatencyProfile:
        """The first serving engine's profile (the engines serve one model; devices may differ)."""
        return next((link.profile for link in self.links if link.accepting), self.links[0].profile)

    @property
    def on_model(self) -> Callable[[Path], None] | None:
        return self.links[0].on_model

    @on_model.setter
    def on_model(self, callback: Callable[[Path], None] | None) -> None:
        for link in self.links:
            link.on_model = callback

    @property
    def device(self) -> str | None:
        """Where the engines run, as they said: 'cuda:0,cuda:1' (None until one has)."""
        devices = list(dict.fromkeys(link.device for link in self.links if link.device is not None))
        return ",".join(devices) or None

    @property
    def accepting(self) -> bool:
        return any(link.accepting for link in self.links)

    @property
    def queue_depth(self) -> int:
        return sum(link.queue_depth for link in self.links)

    @property
    def error(self) -> BaseException | None:
        """Failed for good only when every engine has."""
        errors = [link.error for link in self.links]
        return errors[0] if all(errors) else None

    @property
    def handoff_s(self) -> float:
        return min(link.handoff_s for link in self.links)

    def front(self) -> Any:
        return self.front_costs.now()

    @property
    def ready_detail(self) -> str | None:
        return None if self.accepting else _first(link.ready_detail for link in self.links)

    @property
    def unavailable_detail(self) -> str | None:
        return None if self.accepting else _first(link.unavailable_detail for link in self.links)

    @property
    def health_detail(self) -> str | None:
        """Not alive only when no engine can serve again: one that cannot heal leaves the others serving."""
        details = [link.health_detail for link in self.links]
        return details[0] if all(details) else None

    # -- the engine interface ---------------------------------------------------------------------------

    def start(self) -> None:
        for link in self.links:
            link.start()

    @contextlib.contextmanager
    def arriving(self) -> Iterator[Arrival]:
        """A request being read counts for every engine's admission: it may go to any of them."""
        with contextlib.ExitStack() as stack:
            arrivals = [stack.enter_context(link.arriving()) for link in self.links]
            yield arrivals[0]

    def _choose(self) -> EngineProcess:
        serving = [link for link in self.links if link.accepting]
        if not serving:
            raise UnavailableError(self.unavailable_detail or "no engine process is serving")
        turn = next(self._turn)
        return min(serving, key=lambda link: (link.queue_depth, (self.links.index(link) - turn) % len(self.links)))

    def admit(self, budget: Budget, received: float, in_front: int | None = None, crowded: bool = False) -> None:
        """Admission against the engine the request would go to now (the engine decides again on submit)."""
        with contextlib.suppress(UnavailableError):  # none serving: submit says so
            self._choose().admit(budget, received, in_front, crowded)

    def submit(self, job: Job, arrival: Arrival | None = None) -> None:
        link = self._choose()
        link.submit(job, arrival)
        key = id(job)
        self._owner[key] = link
        job.future.add_done_callback(lambda _: self._owner.pop(key, None))

    def cancel(self, job: Job) -> None:
        link = self._owner.pop(id(job), None)
        if link is not None:
            link.cancel(job)

    def reload(self, path: Path, timeout: float) -> dict[str, float]:
        """Each engine in turn; the first refusal stops it (a checkpoint that fails one fails all: same
        checks). Returns the slowest engine's timings."""
        timings = [link.reload(path, timeout) for link in self.links]
        return {key: max(t[key] for t in timings) for key in timings[0]}

    def stop(self, timeout: float | None = 30.0) -> None:
        for link in self.links:
            link.stop(timeout)


def _first(values: Iterator[str | None]) -> str | None:
    return next((value for value in values if value is not None), None)
