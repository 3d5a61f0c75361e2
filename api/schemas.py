"""What the API answers and accepts. Never a password, passphrase or token, except the new
token of `POST /users`, shown that once."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field

from fleetd.v6status import V6Status
from inventory.models import ContractItem, Customer, Line, Unit, UnitObservation


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class _RowOut(_Out):
    """An answer that is one stored row, field for field."""

    @classmethod
    def of(cls, row: Any) -> Self:
        return cls.model_validate(row)


# ----- customers ---------------------------------------------------------------------------
class AddressOut(_Out):
    kind: str
    recipient: str
    postal_code: str
    address: str


class CustomerOut(_Out):
    code: str
    name: str
    kana: str
    phone: str
    branch: str


class CustomerDetail(CustomerOut):
    addresses: list[AddressOut]

    @classmethod
    def of(cls, customer: Customer) -> CustomerDetail:
        return cls(
            code=customer.code,
            name=customer.name,
            kana=customer.kana,
            phone=customer.phone,
            branch=customer.branch,
            addresses=[AddressOut.model_validate(a) for a in customer.addresses],
        )


class LineOut(_Out):
    line_type: str
    moved_by_customer: bool
    v6_order_state: str
    v6_order_date: date | None
    tunnel: dict[str, str] | None

    @classmethod
    def of(cls, line: Line) -> LineOut:
        tunnel = line.tunnel
        return cls(
            line_type=line.line_type,
            moved_by_customer=line.moved_by_customer,
            v6_order_state=line.v6_order_state,
            v6_order_date=line.v6_order_date,
            tunnel=tunnel.as_dict() if tunnel else None,
        )


class ItemOut(_Out):
    item_no: str
    item_code: str
    status: str
    serial: str | None
    billing_start_month: date | None
    cancellation_date: date | None
    order_note: str
    original_ssid: str | None

    @classmethod
    def of(cls, item: ContractItem, serial: str | None) -> ItemOut:
        return cls(
            item_no=item.item_no,
            item_code=item.item_code,
            status=item.status,
            serial=serial,
            billing_start_month=item.billing_start_month,
            cancellation_date=item.cancellation_date,
            order_note=item.order_note,
            original_ssid=item.original_ssid,
        )


# ----- units -------------------------------------------------------------------------------
class UnitOut(_Out):
    serial: str
    customer_code: str
    role: str
    parent_serial: str | None
    platform: str
    link_item: bool
    mgmt_address: str | None
    ssh_port: int | None
    snmp_port: int | None
    host_key_pinned: bool
    intended_wan_mode: str | None
    intended_tunnel: dict[str, str] | None
    intended_business_ssid: str | None
    business_passphrase_on_record: bool
    intended_guest_ssid: str | None
    guest_passphrase_on_record: bool
    intended_account_state: str

    @classmethod
    def of(cls, unit: Unit, customer_code: str, parent_serial: str | None) -> UnitOut:
        return cls(
            serial=unit.serial,
            customer_code=customer_code,
            role=unit.role,
            parent_serial=parent_serial,
            platform=unit.platform,
            link_item=unit.link_item,
            mgmt_address=unit.mgmt_address,
            ssh_port=unit.ssh_port,
            snmp_port=unit.snmp_port,
            host_key_pinned=unit.host_key_fingerprint is not None,
            intended_wan_mode=unit.intended_wan_mode,
            intended_tunnel=unit.intended_tunnel,
            intended_business_ssid=unit.intended_business_ssid,
            business_passphrase_on_record=unit.intended_business_passphrase_enc is not None,
            intended_guest_ssid=unit.intended_guest_ssid,
            guest_passphrase_on_record=unit.intended_guest_passphrase_enc is not None,
            intended_account_state=unit.intended_account_state,
        )


class ObservationOut(_Out):
    serial: str
    observed_at: datetime | None
    age_seconds: float | None
    reachable: bool | None
    wan_mode: str | None
    tunnel_state: str | None
    account_state: str | None
    read_values: dict[str, Any] | None
    last_error: str | None
    last_error_at: datetime | None
    drift: list[str] | None

    @classmethod
    def of(cls, serial: str, seen: UnitObservation | None, now: datetime) -> ObservationOut:
        if seen is None:
            return cls.model_validate({"serial": serial} | dict.fromkeys(_OBSERVED))
        age = (now - seen.observed_at).total_seconds() if seen.observed_at else None
        return cls(
            serial=serial,
            observed_at=seen.observed_at,
            age_seconds=age,
            reachable=seen.reachable,
            wan_mode=seen.wan_mode,
            tunnel_state=seen.tunnel_state,
            account_state=seen.account_state,
            read_values=seen.read_values,
            last_error=seen.last_error,
            last_error_at=seen.last_error_at,
            drift=seen.drift,
        )


_OBSERVED = (
    "observed_at", "age_seconds", "reachable", "wan_mode", "tunnel_state", "account_state",
    "read_values", "last_error", "last_error_at", "drift",
)  # fmt: skip


class DriftOut(_Out):
    serial: str
    observed_at: datetime | None
    drift: list[str]


# ----- operations --------------------------------------------------------------------------
class OperationOut(_RowOut):
    id: int
    kind: str
    unit_serial: str | None
    customer_code: str | None
    params: dict[str, Any]
    state: str
    attempts: int
    not_before: datetime
    deadline: datetime | None
    batch_id: str | None
    requested_by: str
    reason: str | None
    created_at: datetime
    updated_at: datetime


class StepOut(_RowOut):
    seq: int
    at: datetime
    step: str
    ok: bool
    detail: str


class OperationDetail(OperationOut):
    steps: list[StepOut]


class Accepted(BaseModel):
    """A change request's answer: the operations it queued (existing ones when the request
    was a repeat of an earlier one with the same idempotency key)."""

    request_id: str
    operations: list[OperationOut]


# ----- batches -----------------------------------------------------------------------------
class BatchIn(BaseModel):
    kind: str = Field(description="An operation kind: cutover, guest_rotate, account_stop …")
    selection: dict[str, Any] = Field(
        description='Exactly one of {"customers": [codes]}, {"serials": [serials]} or '
        '{"filter": {role, line_type, branch, v6_order_state, wan_mode, platform}}.'
    )
    params: dict[str, Any] = Field(default_factory=dict)
    canary: int = Field(default=0, ge=0, le=100_000)
    max_failure_rate: float = Field(default=0.2, ge=0.0, le=1.0)
    max_parallel: int = Field(default=100, ge=1, le=100_000)


class RefusedOut(BaseModel):
    target: str
    reason: str


class BatchOut(BaseModel):
    id: str
    kind: str
    state: str
    total: int
    counts: dict[str, int]
    ended: int
    failure_rate: float
    finished: bool
    reason: str | None
    canary: int
    requested_by: str
    created_at: datetime


class BatchCreated(BatchOut):
    request_id: str
    refused: list[RefusedOut]


# ----- V6 status ---------------------------------------------------------------------------
class ParentV6(BaseModel):
    serial: str
    verdict: str
    verdict_code: str
    reachable: bool | None
    wan_mode: str | None
    tunnel_state: str | None
    tunnel_reason: str | None
    u_lamp: str | None
    observed_at: datetime | None
    reading_age_seconds: float | None
    last_error: str | None
    last_error_at: datetime | None
    cutover_done_at: datetime | None


class OpBriefOut(BaseModel):
    id: int
    kind: str
    unit_serial: str | None
    state: str
    not_before: datetime
    updated_at: datetime
    reason: str | None


class V6Out(BaseModel):
    customer_code: str
    verdict: str
    verdict_code: str
    order_state: str | None
    order_date: date | None
    moved_by_customer: bool
    parents: list[ParentV6]
    pending_operations: list[OpBriefOut]
    failed_operations: list[OpBriefOut]
    live: dict[str, str | None] | None = Field(
        default=None, description="With ?live=true: per unit, None when read now, else why not."
    )

    @classmethod
    def of(cls, status: V6Status, now: datetime, live: dict[str, str | None] | None) -> V6Out:
        facts = status.facts
        parents = []
        for p in facts.parents:
            unit = status.per_unit.get(p.serial, status.verdict)
            parents.append(
                ParentV6(
                    serial=p.serial,
                    verdict=unit.words,
                    verdict_code=unit.code,
                    reachable=p.reachable,
                    wan_mode=p.wan_mode,
                    tunnel_state=p.tunnel_state,
                    tunnel_reason=p.tunnel_reason,
                    u_lamp=p.u_lamp,
                    observed_at=p.observed_at,
                    reading_age_seconds=p.age_seconds(now),
                    last_error=p.last_error,
                    last_error_at=p.last_error_at,
                    cutover_done_at=p.cutover_done_at,
                )
            )
        ops = [OpBriefOut(**o.__dict__) for o in facts.operations]
        return cls(
            customer_code=facts.customer_code,
            verdict=status.verdict.words,
            verdict_code=status.verdict.code,
            order_state=facts.order_state,
            order_date=facts.order_date,
            moved_by_customer=facts.moved_by_customer,
            parents=parents,
            pending_operations=[o for o in ops if o.state in ("queued", "running", "retry_wait")],
            failed_operations=[o for o in ops if o.state in ("failed", "escalated")],
            live=live,
        )


# ----- registration notice -----------------------------------------------------------------
class Requester(BaseModel):
    kind: Literal["owner", "shop_staff"] = Field(
        description="Who asked: the shop's owner or a member of its staff."
    )
    name: str = Field(min_length=1, max_length=100, description="Their name, as they gave it.")


class Destination(BaseModel):
    kind: Literal["installation", "contract_holder", "billing"] = Field(
        description="Which of the customer's registered addresses the notice is posted to."
    )
    address: str | None = Field(
        default=None,
        max_length=300,
        description="Optional: the address as the caller read it; must be the registered one.",
    )


class NoticeIn(BaseModel):
    requester: Requester
    destination: Destination


# ----- imports, audit, users, health ---------------------------------------------------------
class ProblemOut(BaseModel):
    line: int
    field: str
    value: str | None
    rule: str


class ImportOut(BaseModel):
    kind: str
    source: str
    rows: int
    created: int
    updated: int
    unchanged: int
    rejected_rows: int
    refused: bool
    written: bool
    dry_run: bool
    entities: dict[str, dict[str, int]]
    problems: list[ProblemOut]
    warnings: list[str]
    ignored_columns: list[str]
    summary: str


class AuditOut(_RowOut):
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    request_id: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    detail: str


class SshKeyOut(_RowOut):
    fingerprint: str
    public_key: str
    created_at: datetime


class UserOut(_RowOut):
    name: str
    role: str
    disabled: bool
    created_at: datetime


class UserIn(BaseModel):
    name: str = Field(description="Lower-case login name, also the SSH name at the bastion.")
    role: Literal["cs", "tech", "admin", "auditor"]


class UserCreated(UserOut):
    token: str = Field(description="The API token: shown this once, stored only as a hash.")


class SshKeyIn(BaseModel):
    public_key: str = Field(description="One OpenSSH public key line, e.g. the .pub file.")


class ReadyOut(BaseModel):
    ready: bool
    store: str
    schema_revision: str | None
    schema_head: str | None
    scheduler: str
    next_runs: dict[str, datetime | None]
