"""Server-Sent Events that follow something in the store (an operation, a batch).

The stream polls the store, so it shows the work of every daemon sharing the database, not
only this one's: a snapshot event whenever what it follows changed, a comment line now and
then to keep proxies from closing a quiet stream, and an `end` event once it is finished.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import Request
from fastapi.responses import StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import Services

EVENT_STREAM = "text/event-stream"
KEEPALIVE_SECONDS = 15.0
Snapshot = Callable[[AsyncSession], Awaitable[tuple[dict[str, Any], bool]]]


def sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, default=str, ensure_ascii=False)}\n\n".encode()


async def _follow(
    services: Services, request: Request, event: str, snapshot: Snapshot
) -> AsyncIterator[bytes]:
    last: dict[str, Any] | None = None
    quiet = 0.0
    while True:
        async with services.store.sessions() as session:
            data, finished = await snapshot(session)
        if data != last:
            yield sse(event, data)
            last, quiet = data, 0.0
        elif quiet >= KEEPALIVE_SECONDS:
            yield b": still following\n\n"
            quiet = 0.0
        if finished:
            yield sse("end", data)
            return
        if await request.is_disconnected():
            return
        await services.sleep(services.poll_seconds)
        quiet += services.poll_seconds


def follow(
    services: Services, request: Request, event: str, snapshot: Snapshot
) -> StreamingResponse:
    """A streaming answer of `event` snapshots until `snapshot` says it is finished."""
    return StreamingResponse(
        _follow(services, request, event, snapshot),
        media_type=EVENT_STREAM,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


STREAM_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {EVENT_STREAM: {"schema": {"type": "string"}}},
        "description": "Server-Sent Events: a snapshot on every change, then `end`.",
    }
}
