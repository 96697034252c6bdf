"""ArrivalProtocol, driven as uvicorn drives it: each request's stamp says when its first byte was read and how
many other requests this process was handling when it began (a request that came with or after others is
not a lone one, even if they are gone by the time its handler runs)."""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.config import Config
from uvicorn.server import ServerState

from elastic_anytime.service.http import arrival
from elastic_anytime.service.http.arrival import SCOPE_KEY, ArrivalProtocol, ArrivalStamp

REQUEST = b"GET /v1/model HTTP/1.1\r\nHost: x\r\n\r\n"


class Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def write(self, data: bytes) -> None:  # type: ignore[override]
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None: ...


def test_each_request_is_stamped_with_the_others_open_when_it_began(monkeypatch: Any) -> None:
    monkeypatch.setitem(arrival._open, "requests", 0)
    stamps: list[ArrivalStamp] = []
    answer = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        stamps.append(scope[SCOPE_KEY])
        await answer.wait()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    async def run() -> None:
        config = Config(app=app, lifespan="off", log_level="warning")
        config.load()
        protocols = [ArrivalProtocol(config=config, server_state=ServerState(), app_state={}) for _ in range(3)]
        for protocol in protocols:
            protocol.connection_made(Transport())
        protocols[0].data_received(REQUEST)  # alone
        protocols[1].data_received(REQUEST)  # while the first is handled
        await asyncio.sleep(0.01)
        answer.set()
        await asyncio.sleep(0.01)  # both answered: the next one is alone again
        protocols[2].data_received(REQUEST)
        await asyncio.sleep(0.01)

    asyncio.run(run())
    assert [stamp.others_open for stamp in stamps] == [0, 1, 0]
    assert stamps[0].first_byte <= stamps[1].first_byte <= stamps[2].first_byte
