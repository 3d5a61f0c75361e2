"""What a workflow is, and what the engine hands it.

A workflow carries out one operation on one unit (or one customer's units). It never claims,
retries or finishes operations: it runs steps and either returns a one-line summary (the
operation succeeded) or raises from the `inventory.errors` tree:

- `Unreachable`, `Timeout` (retryable): the engine retries with backoff until the deadline,
  then escalates;
- `AuthFailed`, `HostKeyMismatch`: escalated at once, staff must act;
- `RuleViolation`, `VerificationFailed`, `CommandFailed`, `Conflict`, `NotFound`: failed,
  final, with the error's words as the reason.

A workflow re-reads the unit before acting (an operation taken up again after a crash may
find its change already applied) and sends no configuration when the unit already has it.

Requests are the other half: a request function checks what can be checked offline and
writes the operations (`inventory.operations.enqueue`), nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from drivers.base import UnitDriver, UnitState
from fleetd.calendar import BusinessCalendar
from fleetd.clock import Clock
from inventory.operations import Operation
from inventory.redact import Redactor
from inventory.secrets import SecretBox

# operation kinds: one workflow each (fleetd.workflows.WORKFLOWS)
CUTOVER = "cutover"  # V4 -> V6 of a parent
REVERT_V4 = "revert_v4"  # back to V4
BUSINESS_WIFI = "business_wifi"  # business SSID / passphrase of every unit of a customer
GUEST_ROTATE = "guest_rotate"  # a new guest passphrase
ORIGINAL_SSID = "original_ssid"  # set or clear the guest SSID as the shop's own name
ACCOUNT_STOP = "account_stop"
ACCOUNT_RESUME = "account_resume"
LINK_SWAP = "link_swap"  # a faulty parent or AP out, a link item in


# operation secrets travel as one encrypted token of a JSON object (Operation.secret_params)
SECRETS_PURPOSE = "operation-secrets"


def seal_secrets(box: SecretBox, secrets: Mapping[str, str]) -> str | None:
    """The `secret_params` token for an operation's secrets (None when there are none)."""
    if not secrets:
        return None
    return box.encrypt_values(secrets, purpose=SECRETS_PURPOSE)


def open_secrets(box: SecretBox, token: str | None) -> dict[str, str]:
    if token is None:
        return {}
    return box.decrypt_values(token, purpose=SECRETS_PURPOSE)


class OpContext(Protocol):
    """One run (attempt) of one operation, as the engine gives it to a workflow."""

    op_id: int
    kind: str
    unit_serial: str | None
    customer_code: str | None
    params: Mapping[str, Any]
    secrets: Mapping[str, str]  # the decrypted secret_params (registered with the redactor)
    attempt: int  # 1 on the first run
    requested_by: str
    batch_id: str | None
    deadline: datetime | None
    clock: Clock
    calendar: BusinessCalendar
    box: SecretBox
    redactor: Redactor

    def transaction(self) -> AbstractAsyncContextManager[AsyncSession]:
        """An inventory transaction, committed when the block ends without error."""
        ...

    def connect(self, serial: str) -> AbstractAsyncContextManager[UnitDriver]:
        """One session on the unit (its credential and pinned host key from the inventory;
        on first contact the host key seen is pinned). Each read is recorded as the unit's
        observation; an Unreachable/Timeout marks the unit unreachable."""
        ...

    async def step(self, name: str, ok: bool = True, detail: str = "") -> None:
        """Append a step to the operation's history (masked, committed at once) and log it."""
        ...

    async def observed(self, state: UnitState) -> None:
        """Record a reading of a unit made outside `connect` (e.g. a verification re-read)."""
        ...

    def intend_wifi(
        self, serial: str, network: str, *, ssid: str | None = None, passphrase: str | None = None
    ) -> None:
        """Store the unit's intended Wi-Fi (checked now; written with the operation's outcome,
        in the same transaction)."""
        ...

    def intend_account(self, serial: str, state: str) -> None:
        """Store the unit's intended account state (written with the operation's outcome)."""
        ...

    async def audit(
        self,
        action: str,
        target: str,
        *,
        before: Mapping[str, Any] | None = None,
        after: Mapping[str, Any] | None = None,
        detail: str = "",
    ) -> None:
        """Append to the audit log as the operation's requester (masked, committed at once)."""
        ...

    async def follow_up(
        self,
        kind: str,
        *,
        idempotency_key: str,
        unit_serial: str | None = None,
        customer_code: str | None = None,
        params: Mapping[str, Any] | None = None,
        secrets: Mapping[str, str] | None = None,
        not_before: datetime | None = None,
        deadline: datetime | None = None,
    ) -> Operation:
        """Enqueue another operation (e.g. the cutover due 2 business days after a swap)."""
        ...


class Workflow(Protocol):
    kind: str
    # how long the engine keeps retrying an unreachable unit when the request set no deadline
    default_deadline: timedelta

    async def run(self, ctx: OpContext) -> str:
        """Carry out the operation; return a one-line summary for staff."""
        ...


@dataclass(frozen=True)
class RequestContext:
    """Who asks, and with what: passed to every request function."""

    requested_by: str
    box: SecretBox
    now: datetime
    calendar: BusinessCalendar = field(default_factory=BusinessCalendar)
    request_id: str | None = None
    batch_id: str | None = None
    redactor: Redactor | None = None


class RequestFn(Protocol):
    """Check offline rules and enqueue the operations for one customer or unit.

    ``target`` is a customer code (9 digits) or a unit serial (US01…), as the kind accepts;
    ``params`` are the kind's parameters (secrets among them are encrypted by the function).
    Returns the operations (existing ones when the idempotency key was known).
    """

    async def __call__(
        self,
        session: AsyncSession,
        ctx: RequestContext,
        target: str,
        params: Mapping[str, Any],
    ) -> list[Operation]: ...
