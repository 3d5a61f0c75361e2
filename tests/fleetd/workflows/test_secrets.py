"""No passphrase or password a workflow handles shows up in its steps, audit entries,
summaries, errors, logs or any table (canary values, no redaction installed)."""

from __future__ import annotations

import logging

import pytest

from fleetd.workflows.base import BUSINESS_WIFI, CUTOVER, GUEST_ROTATE, LINK_SWAP, open_secrets
from inventory.errors import VerificationFailed
from tests.fleetd.workflows.conftest import C2, CUST0, CUST1, P0, P1, P2, Harness

BASE = "127.85.0.1"
CANARY = "Canary-Passphrase-7731"


@pytest.fixture
def spares() -> tuple[str, ...]:
    return (P2, C2)


def _leaks(texts: list[str], secrets: list[str]) -> list[str]:
    return [t for t in texts for s in secrets if s in t]


async def test_no_secret_leaves_a_workflow_in_clear(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    h = harness
    fleet = h.served.fleet
    texts: list[str] = []

    wifi = await h.request(BUSINESS_WIFI, CUST0, {"ssid": "Canary Biz", "passphrase": CANARY})
    texts += await h.run_all(wifi)
    guest = await h.request(GUEST_ROTATE, CUST1)
    texts += await h.run_all(guest)
    generated = open_secrets(h.box, guest[0].secret_params)["passphrase"]
    await h.line(P1, tunnel={"type": "ds-lite", "aftr": "2001:db8:99::1"})
    [cutover] = await h.request(CUTOVER, P1)
    with pytest.raises(VerificationFailed) as failed:
        await h.run(cutover)
    texts.append(str(failed.value))
    params = {
        "new_serial": P2,
        "address": fleet.address_of[P2],
        "ssh_port": h.served.ssh_port,
        "password": fleet.password_of(P2),
        "host_key": fleet.host_public_key(fleet.units[P2]),
    }
    [swap] = await h.request(LINK_SWAP, P0, params)
    texts.append(await h.run(swap))

    secrets = [CANARY, generated, fleet.password_of(P2), fleet.password_of(P1)]
    secrets += [fleet.units[s].running["wan pppoe password"] for s in (P1, P2)]
    assert h.unit(P2).running  # the canaries are real: the units hold them
    texts += [raw for ctx in h.contexts for raw in ctx.raw]
    texts += [r.getMessage() for r in caplog.records] + [r.exc_text or "" for r in caplog.records]
    texts += [repr(op) for op in await h.operations()]
    assert _leaks(texts, secrets) == []
    cells = await h.every_cell()
    assert _leaks(cells, secrets) == []
    assert any(cell.startswith("v1:") for cell in cells)  # stored, but encrypted
    assert any("********" in t for t in texts)  # masked where they would have shown
