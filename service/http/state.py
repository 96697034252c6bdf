"""What one app serves: settings, model runner, profile, engine, metrics. Built in the lifespan and
kept on `app.state.service`; routes reach it through one dependency (`dependencies.get_service`).

With the process engine (ELASTIC_ENGINE=process, the default) the model runs in the inference process,
and this process holds no weights and never imports torch: `runner` is then the checkpoint's
`service.http.model_card.ModelCard` (description and preprocessing from elastic.json). With the thread
engine, and in the inference process itself, it is the `service.engine.runner.ModelRunner`."""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import numpy as np
from PIL import Image

from elastic_anytime.models.pretrained import default_checkpoint
from elastic_anytime.service.engine.guardrail import make_guardrail
from elastic_anytime.service.engine.loading import engine_config, load_model, new_profile
from elastic_anytime.service.engine.profile import LatencyProfile
from elastic_anytime.service.engine.scheduler import Engine
from elastic_anytime.service.engine.types import EngineApi
from elastic_anytime.service.http.arrival import open_requests
from elastic_anytime.service.http.errors import ApiError
from elastic_anytime.service.http.imaging import finish_image, open_image
from elastic_anytime.service.http.metrics import Metrics
from elastic_anytime.service.http.model_card import ModelCard, ModelCardError
from elastic_anytime.service.http.reading_gate import ReadingGate
from elastic_anytime.service.settings import Settings
from elastic_anytime.service.worker.cpu_placement import engine_threads, plan_here
from elastic_anytime.service.worker.group import connect_engines

if TYPE_CHECKING:  # torch is imported only where a model is loaded: never in a process engine's front end
    from elastic_anytime.service.engine.runner import ModelRunner

log = logging.getLogger(__name__)


@dataclass
class ServiceState:
    settings: Settings
    checkpoint_path: Path
    runner: ModelRunner | ModelCard  # the card with the process engine: the front end reads only what both offer
    profile: LatencyProfile
    engine: EngineApi
    metrics: Metrics
    decode_limiter: anyio.CapacityLimiter = field(repr=False)
    # where the model serves; with ELASTIC_ENGINE=process the device setting as given ("auto" unresolved:
    # resolving it needs torch, which only the inference process imports)
    device: str = "cpu"
    shutting_down: bool = False  # set on SIGTERM: classify answers 503, /readyz 503 (service.http.shutdown)
    reloading: bool = False  # an admin reload is loading/calibrating a new checkpoint (service.http.reload)
    # classify requests being handled and when the last one arrived (event-loop side only: no lock)
    in_flight: int = 0
    last_request: float = 0.0
    submitted: int = 0  # of those, handed to the engine (and not answered yet)
    _reading: ReadingGate | None = field(default=None, repr=False)  # see `reading`
    _reader: asyncio.Task | None = field(default=None, repr=False)  # the request holding it
    _reader_since: float = field(default=0.0, repr=False)  # and its first byte

    @property
    def model_name(self) -> str:
        return str(self.runner.meta["arch"]["name"])

    def others_in_front(self, fallback: int) -> int:
        """Other requests this process has begun reading and not handed to the engine yet (besides the one
        asking, not submitted yet either); `fallback` without service.http.arrival's count."""
        begun = open_requests()
        return fallback if begun is None else max(0, begun - self.submitted - 1)

    def alone(self) -> bool:
        """Whether the request asking is the only one this process is reading or answering."""
        begun = open_requests()
        return self.in_flight == 1 if begun is None else begun <= 1

    @asynccontextmanager
    async def reading(self, since: float | None = None) -> AsyncIterator[None]:
        """One request's parsing, decoding and submission at a time (event loop only), timed as the loop's
        cost of reading a request (service.engine.front_costs). `since`: the request's first byte, which
        decides whose turn comes next while the front end is behind (service.http.reading_gate).

        A burst read in one go becomes one task per request, all ready at once; without this, each would
        parse and decode in turn before the loop looked at the engine's answers again, and the first
        answer would wait for the whole burst to be read. A request that waits here lets the loop take
        in the answers that came meanwhile before the next one is read. Uncontended, it costs nothing.

        The turn is handed on at the loop's next turn, not at once: the tasks of a burst never wait on
        one another otherwise (each reads without suspending), so every one of them would read in the
        same turn, the engine's answers unread in between (measured: the first answer of a burst of 16
        waited 15 ms for the loop).
        """
        if self._reading is None:
            self._reading = ReadingGate()
        lock = self._reading
        since = time.monotonic() if since is None else since
        await lock.acquire(since)
        started, self._reader, self._reader_since = time.monotonic(), asyncio.current_task(), since
        try:
            yield
        except ApiError as err:
            if err.code == "overloaded":  # too late for its budget: the gate learns how long is too long
                lock.record(started - since, admitted=False)
            raise
        else:
            lock.record(started - since, admitted=True)
        finally:
            self._reader = None
            self.engine.front_costs.observe_read(time.monotonic() - started)
            asyncio.get_running_loop().call_soon(lock.release)

    @asynccontextmanager
    async def off_the_loop(self) -> AsyncIterator[None]:
        """Let others read while this request waits for a worker thread (a large image decoding): the
        turn taken by `reading`, if this task holds it, is given back for the block and taken again after."""
        lock = self._reading
        if lock is None or self._reader is not asyncio.current_task():
            yield
            return
        self._reader, since = None, self._reader_since
        lock.release()
        try:
            yield
        finally:
            await lock.acquire(since)
            self._reader, self._reader_since = asyncio.current_task(), since

    @contextmanager
    def track_request(self) -> Iterator[None]:
        """Count one classify request while it is handled (graceful shutdown waits for these)."""
        self.in_flight += 1
        self.last_request = time.monotonic()
        try:
            yield
        finally:
            self.in_flight -= 1

    def adopt(self, path: Path, runner: ModelRunner | ModelCard, profile: LatencyProfile) -> None:
        """After a hot reload: describe the model the engine now serves (/v1/model, metrics)."""
        self.checkpoint_path, self.runner, self.profile = path, runner, profile
        self.metrics.safely(self.metrics.model_info.clear)  # one elastic_model_info series: the current model
        self.metrics.set_model(self.model_name, path.name, self.device, runner.num_exits)
        self.metrics.set_expected_agreement(runner.meta.get("agreement"))

    def open(self, data: bytes) -> Image.Image:
        """Image bytes → an opened image, its header checked against the limits (nothing decoded yet)."""
        return open_image(data, self.settings.max_image_pixels)

    def prepare(self, image: Image.Image) -> np.ndarray:
        """An opened image → the model's input (C, H, W float32). Blocking for large images: run those in a thread."""
        runner = self.runner
        return runner.preprocess(finish_image(image, channels=runner.channels, min_side=runner.min_side))

    def warm_decode(self) -> None:
        """Run decode + preprocess once per common format, so the first request skips lazy set-up."""
        for fmt in ("PNG", "JPEG"):
            buffer = io.BytesIO()
            Image.new("RGB", (64, 48), (128, 64, 32)).save(buffer, fmt)
            self.prepare(self.open(buffer.getvalue()))


def build_service(settings: Settings) -> ServiceState:
    """Load the checkpoint (or, with the process engine, read its card) and wire the parts; the engine is not
    started yet (no calibration here)."""
    path = Path(settings.checkpoint) if settings.checkpoint else default_checkpoint()
    if settings.engine == "process":
        return _build_front_end(settings, path)
    import torch  # the thread engine runs the model in this process

    from elastic_anytime.service.engine.runner import resolve_device

    torch.set_num_threads(engine_threads(settings.torch_threads))
    device = resolve_device(settings.device)
    runner, profile = load_model(settings, path, device)
    metrics = _metrics(runner, path, str(device))
    guardrail = make_guardrail(settings.guardrail_share)
    engine = Engine(runner, profile, engine_config(settings), observer=metrics, guardrail=guardrail)
    return _service(settings, path, runner, profile, engine, metrics, str(device))


def _build_front_end(settings: Settings, path: Path) -> ServiceState:
    """The process engine's front end: the model runs in the inference process, which loads it, checks it (the
    weights, the classes against the head) and calibrates it; this process reads only its card, so that it
    holds no weights and no torch. A broken elastic.json fails here at once, before a child is started."""
    card = ModelCard.read(path)
    metrics = _metrics(card, path, settings.device)
    placement = plan_here(settings.cpu_placement, engine_threads(settings.torch_threads))
    # one engine process of its own, or the supervisor's (one per GPU: a group that spreads the jobs)
    engine = connect_engines(
        settings.to_env(), lambda: new_profile(settings, card.num_exits), engine_config(settings), metrics, placement
    )
    profile = engine.profile
    service = _service(settings, path, card, profile, engine, metrics, settings.device)

    def on_model(new_path: Path) -> None:
        """The inference process serves `new_path` on its device: its first "ready", or another front end's
        reload switched the shared one (event loop)."""
        try:
            new_card = ModelCard.read(new_path)
        except ModelCardError as err:  # keep serving: answers still come, labelled from the card held
            log.error("the inference process now serves %s, but its card cannot be read here: %s", new_path, err)
            return
        service.device = engine.device or settings.device  # what "auto" became in the engine
        service.adopt(new_path, new_card, engine.profile)
        log.info("the engine serves %s (%d exits) on %s", new_path, new_card.num_exits, service.device)

    engine.on_model = on_model  # EngineProcess reads it with getattr
    return service


def _metrics(runner: ModelRunner | ModelCard, path: Path, device: str) -> Metrics:
    metrics = Metrics(runner.num_exits)
    metrics.set_model(str(runner.meta["arch"]["name"]), path.name, device, runner.num_exits)
    metrics.set_expected_agreement(runner.meta.get("agreement"))
    return metrics


def _service(
    settings: Settings,
    path: Path,
    runner: ModelRunner | ModelCard,
    profile: LatencyProfile,
    engine: EngineApi,
    metrics: Metrics,
    device: str,
) -> ServiceState:
    service = ServiceState(
        settings=settings,
        checkpoint_path=path,
        runner=runner,
        profile=profile,
        engine=engine,
        metrics=metrics,
        decode_limiter=anyio.CapacityLimiter(settings.decode_threads),
        device=device,
    )
    service.warm_decode()
    return service
