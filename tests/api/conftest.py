"""The API in-process over a small seeded inventory, on SQLite and PostgreSQL.

`seed` writes one shop (customer, addresses, a V6-ready line, a parent with a child, contract
items, a reading of the parent, a finished operation with steps, an audit entry) and one
staff user per role. The business passphrase is `CANARY`: no answer but the registration
notice may ever hold it.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import httpx
import pytest
from fastapi import FastAPI

from api.app import create_app
from api.deps import Services
from fleetd.clock import ManualClock
from fleetd.workflows.base import seal_secrets
from inventory import audit, repo, users
from inventory import operations as ops
from inventory.domain import AddressKind, TunnelType
from inventory.imports.contracts import COLUMNS as CONTRACT_COLUMNS
from inventory.operations import Batch
from inventory.records import AddressData, ContractItemData, CustomerData, LineData, UnitData
from inventory.redact import Redactor
from inventory.rules import Tunnel
from inventory.secrets import SecretBox
from inventory.store import Store

CODE = "138301482"
PARENT = "US01AP000001"
CHILD = "US01AP000002"
CANARY = "Canary-Biz-Pass-7731"  # the business passphrase
GUEST_CANARY = "Canary-Guest-Pass-5520"
UNIT_PASSWORD = "Unit-Login-Pass-0042"
NOW = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)  # 10:00 JST
ROLES = ("cs", "tech", "admin", "auditor")


def contracts_csv(**values: str) -> bytes:
    """A one-row contract export for the shop, every column of the format present."""
    row = {
        "customer_code": CODE, "customer_name": "カフェ木村", "customer_kana": "カフェキムラ",
        "phone": "03-1234-5678", "item_no": "C0001", "item_code": "9604076",
        "status": "confirmed", "serial": PARENT, "line_type": "flets-east",
        "install_postal_code": "105-0001", "install_address": "東京都港区新橋1-2-3",
    }  # fmt: skip
    row.update(values)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([c.name for c in CONTRACT_COLUMNS])
    writer.writerow([row.get(c.name, "") for c in CONTRACT_COLUMNS])
    return out.getvalue().encode()


ADDRESSES = (
    AddressData(AddressKind.INSTALLATION, "東京都港区新橋1-2-3", "105-0001", "カフェ木村"),
    AddressData(AddressKind.BILLING, "東京都千代田区丸の内1-1", "100-0005", "木村商店"),
)


@dataclass
class Seeded:
    tokens: dict[str, str]
    done_op: int  # a succeeded operation with steps
    batch: str  # a finished batch


async def seed(store: Store, box: SecretBox) -> Seeded:
    async with store.transaction() as session:
        await repo.upsert_customer(
            session,
            CustomerData(
                CODE,
                name="カフェ木村",
                kana="カフェキムラ",
                phone="03-1234-5678",
                branch="東京支店",
                addresses=ADDRESSES,
            ),
        )  # fmt: skip
        tunnel = Tunnel(TunnelType.DS_LITE, {"aftr": "2001:db8::1"})
        await repo.upsert_line(
            session,
            CODE,
            LineData(
                line_type="flets-east",
                v6_order_state="complete",
                v6_order_date=date(2026, 11, 2),
                tunnel=tunnel,
            ),
        )
        for serial, role, parent in ((PARENT, "parent", ""), (CHILD, "child", PARENT)):
            await repo.upsert_unit(
                session,
                UnitData(
                    serial, CODE, role, parent_serial=parent, mgmt_address="127.0.0.1",
                    ssh_port=2022, snmp_port=1161, username="admin", password=UNIT_PASSWORD,
                ),
                box,
            )  # fmt: skip
            await session.flush()
            await repo.set_intended_wifi(
                session, serial, box, "business", ssid="Kimura-Biz", passphrase=CANARY
            )
            await repo.set_intended_wifi(
                session, serial, box, "guest", ssid="Kimura-Free", passphrase=GUEST_CANARY
            )
        await repo.upsert_contract_item(
            session, ContractItemData("C0001", CODE, "9604076", "confirmed", serial=PARENT)
        )
        await repo.record_observation(
            session,
            PARENT,
            reachable=True,
            at=datetime(2026, 11, 24, 0, 55, tzinfo=UTC),
            values={"wan_mode": "pppoe", "tunnel_state": None, "u_lamp": "off", "internet": True},
        )
        done = await ops.enqueue(
            session, kind="guest_rotate", idempotency_key="seed-done", requested_by="alice",
            unit_serial=PARENT, customer_code=CODE, params={"confirm_minutes": 5},
            secret_params=seal_secrets(box, {"passphrase": GUEST_CANARY}),
        )  # fmt: skip
        await session.flush()
        done.op.state = "succeeded"
        await ops.add_step(session, done.op, "read", True, "guest ssid Kimura-Free")
        session.add(Batch(id="b-seed", kind="guest_rotate", requested_by="admin", state="done"))
        await audit.record(session, actor="seed", action="seed", target=CODE, at=NOW)
        tokens = {}
        for role in ROLES:
            _user, tokens[role] = await users.create_user(session, f"{role}-user", role)
    return Seeded(tokens=tokens, done_op=done.op.id, batch="b-seed")


@dataclass
class Api:
    client: httpx.AsyncClient
    app: FastAPI
    services: Services
    seeded: Seeded
    woken: list[int] = field(default_factory=list)

    def as_(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.seeded.tokens[role]}"}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


@pytest.fixture
async def api(
    store: Store, box: SecretBox, redactor: Redactor, clock: ManualClock
) -> AsyncIterator[Api]:
    seeded = await seed(store, box)
    woken: list[int] = []
    services = Services(
        store=store,
        box=box,
        redactor=redactor,
        clock=clock,
        wake_engine=lambda: woken.append(1),
    )
    app = create_app(services)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://fleetd.test") as client:
        yield Api(client, app, services, seeded, woken)


@pytest.fixture(autouse=True)
def _all_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for noisy in ("aiosqlite", "asyncio", "hpack", "httpcore"):
        caplog.set_level(logging.WARNING, logger=noisy)
