"""Every route of the API with a request that succeeds for a caller allowed to make it.

`EXAMPLES` maps (method, path template) to a function making that request's URL and body for
one call (some calls need fresh state: an operation to cancel, a user to disable). The walk
test holds it to the app's routes, so a new route without an example fails the suite.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from itertools import count
from typing import Any

import asyncssh
import httpx

from fleetd.workflows.base import GUEST_ROTATE
from inventory import operations as ops
from inventory import users
from inventory.operations import Batch
from tests.api.conftest import CHILD, CODE, PARENT, Api, contracts_csv

Made = tuple[str, dict[str, Any]]
_fresh = count(1)


@dataclass(frozen=True)
class Example:
    make: Callable[[Api], Awaitable[Made]]
    ok: int = 200
    content_type: str = "application/json"


def fixed(url: str, **kwargs: Any) -> Callable[[Api], Awaitable[Made]]:
    async def make(_api: Api) -> Made:
        return url, kwargs

    return make


async def _op(api: Api, state: str) -> int:
    async with api.services.store.transaction() as session:
        made = await ops.enqueue(
            session,
            kind=GUEST_ROTATE,
            idempotency_key=f"walk-{next(_fresh)}",
            requested_by="walk",
            unit_serial=CHILD,
            customer_code=CODE,
        )
        await session.flush()
        made.op.state = state
        return made.op.id


async def _done(api: Api) -> Made:
    return f"/operations/{api.seeded.done_op}", {}


async def _done_events(api: Api) -> Made:
    return f"/operations/{api.seeded.done_op}/events", {}


async def _cancel(api: Api) -> Made:
    return f"/operations/{await _op(api, 'queued')}/cancel", {}


async def _retry(api: Api) -> Made:
    return f"/operations/{await _op(api, 'failed')}/retry", {}


async def _batch_cancel(api: Api) -> Made:
    batch_id = f"b-walk-{next(_fresh)}"
    async with api.services.store.transaction() as session:
        session.add(Batch(id=batch_id, kind=GUEST_ROTATE, requested_by="walk", state="running"))
    return f"/batches/{batch_id}/cancel", {}


async def _new_user(api: Api) -> Made:
    return "/users", {"json": {"name": f"walk-{next(_fresh)}", "role": "cs"}}


async def _someone(api: Api) -> str:
    name = f"walk-{next(_fresh)}"
    async with api.services.store.transaction() as session:
        await users.create_user(session, name, "cs")
    return name


async def _disable(api: Api) -> Made:
    return f"/users/{await _someone(api)}/disable", {}


async def _token(api: Api) -> Made:
    return f"/users/{await _someone(api)}/token", {}


async def _add_key(api: Api) -> Made:
    key = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    return "/users/tech-user/keys", {"json": {"public_key": key}}


SWAP = {
    "new_serial": "US01LK000001",
    "address": "127.0.0.1",
    "ssh_port": 2022,
    "password": "Link-Item-Pass-1",
    "host_key": asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode(),
}
NOTICE = {
    "requester": {"kind": "owner", "name": "木村"},
    "destination": {"kind": "billing"},
}
CSV = {"content": contracts_csv(), "headers": {"Content-Type": "text/csv"}}

EXAMPLES: dict[tuple[str, str], Example] = {
    ("GET", "/livez"): Example(fixed("/livez")),
    ("GET", "/readyz"): Example(fixed("/readyz")),
    ("GET", "/metrics"): Example(fixed("/metrics"), content_type="text/plain"),
    ("GET", "/customers"): Example(fixed("/customers", params={"kana": "かふぇ"})),
    ("GET", "/customers/{code}"): Example(fixed(f"/customers/{CODE}")),
    ("GET", "/customers/{code}/units"): Example(fixed(f"/customers/{CODE}/units")),
    ("GET", "/customers/{code}/line"): Example(fixed(f"/customers/{CODE}/line")),
    ("GET", "/customers/{code}/items"): Example(fixed(f"/customers/{CODE}/items")),
    ("GET", "/customers/{code}/v6"): Example(fixed(f"/customers/{CODE}/v6")),
    ("POST", "/customers/{code}/registration-notice"): Example(
        fixed(f"/customers/{CODE}/registration-notice", json=NOTICE),
        content_type="application/pdf",
    ),
    ("POST", "/customers/{code}/cutover"): Example(fixed(f"/customers/{CODE}/cutover"), 202),
    ("POST", "/customers/{code}/revert-v4"): Example(fixed(f"/customers/{CODE}/revert-v4"), 202),
    ("POST", "/customers/{code}/business-wifi"): Example(
        fixed(f"/customers/{CODE}/business-wifi", json={"ssid": "Kimura-Office"}), 202
    ),
    ("POST", "/customers/{code}/guest-rotate"): Example(
        fixed(f"/customers/{CODE}/guest-rotate"), 202
    ),
    ("POST", "/customers/{code}/original-ssid"): Example(
        fixed(f"/customers/{CODE}/original-ssid", json={"ssid": "Cafe Kimura"}), 202
    ),
    ("POST", "/units/{serial}/stop"): Example(fixed(f"/units/{PARENT}/stop"), 202),
    ("POST", "/units/{serial}/resume"): Example(fixed(f"/units/{PARENT}/resume"), 202),
    ("POST", "/units/{serial}/swap"): Example(fixed(f"/units/{PARENT}/swap", json=SWAP), 202),
    ("GET", "/units/{serial}"): Example(fixed(f"/units/{CHILD}")),
    ("GET", "/units/{serial}/observation"): Example(fixed(f"/units/{PARENT}/observation")),
    ("GET", "/units/{serial}/drift"): Example(fixed(f"/units/{PARENT}/drift")),
    ("GET", "/operations"): Example(fixed("/operations", params={"unit": PARENT})),
    ("GET", "/operations/{op_id}"): Example(_done),
    ("GET", "/operations/{op_id}/events"): Example(_done_events, content_type="text/event-stream"),
    ("POST", "/operations/{op_id}/cancel"): Example(_cancel),
    ("POST", "/operations/{op_id}/retry"): Example(_retry),
    ("POST", "/batches"): Example(
        fixed(
            "/batches",
            json={"kind": GUEST_ROTATE, "selection": {"customers": [CODE]}, "canary": 1},
        ),
        202,
    ),
    ("GET", "/batches/{batch_id}"): Example(fixed("/batches/b-seed")),
    ("GET", "/batches/{batch_id}/events"): Example(
        fixed("/batches/b-seed/events"), content_type="text/event-stream"
    ),
    ("POST", "/batches/{batch_id}/cancel"): Example(_batch_cancel),
    ("POST", "/imports/{kind}"): Example(
        fixed("/imports/contracts", params={"dry_run": "true"}, **CSV)
    ),
    ("GET", "/month-end/preview"): Example(
        fixed("/month-end/preview", params={"month": "2026-11"})
    ),
    ("POST", "/month-end/run"): Example(fixed("/month-end/run", params={"month": "2026-11"})),
    ("GET", "/audit"): Example(fixed("/audit")),
    ("GET", "/users"): Example(fixed("/users")),
    ("POST", "/users"): Example(_new_user, 201),
    ("POST", "/users/{name}/token"): Example(_token),
    ("POST", "/users/{name}/disable"): Example(_disable),
    ("GET", "/users/{name}/keys"): Example(fixed("/users/tech-user/keys")),
    ("POST", "/users/{name}/keys"): Example(_add_key, 201),
}


async def call(api: Api, method: str, template: str, headers: dict[str, str]) -> httpx.Response:
    url, kwargs = await EXAMPLES[(method, template)].make(api)
    kwargs = dict(kwargs)
    merged = {**kwargs.pop("headers", {}), **headers}
    return await api.client.request(method, url, headers=merged, **kwargs)
