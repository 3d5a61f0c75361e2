"""Plain records going into and out of the repository: checked values, no ORM.

Input records say what a caller wants stored; in `LineData` and `UnitData`, `None` (or
`KEEP` where None is itself a value) means "leave what is stored", so an import of one
source never overwrites the facts another source owns. `Credential` is what a driver gets:
the decrypted credential, whose password never shows in a repr.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from enum import Enum
from typing import Final

from inventory.domain import AddressKind
from inventory.rules import Tunnel


class _Keep(Enum):
    KEEP = "keep"

    def __repr__(self) -> str:
        return "KEEP"


KEEP: Final = _Keep.KEEP
Keep = _Keep


@dataclass(frozen=True)
class AddressData:
    kind: AddressKind
    address: str
    postal_code: str = ""
    recipient: str = ""


@dataclass(frozen=True)
class CustomerData:
    code: str
    name: str = ""
    kana: str = ""
    phone: str = ""
    branch: str = ""
    addresses: tuple[AddressData, ...] = ()


@dataclass(frozen=True)
class LineData:
    line_type: str | None = None
    moved_by_customer: bool | None = None
    v6_order_state: str | None = None
    v6_order_date: date | Keep | None = KEEP
    tunnel: Tunnel | Keep | None = KEEP


@dataclass(frozen=True)
class ContractItemData:
    item_no: str
    customer_code: str
    item_code: str
    status: str
    serial: str = ""
    billing_start_month: date | None = None
    cancellation_date: date | None = None
    order_note: str = ""
    original_ssid: str | None = None


@dataclass(frozen=True)
class UnitData:
    serial: str
    customer_code: str
    role: str
    parent_serial: str = ""
    link_item: bool | None = None
    platform: str | None = None
    mgmt_address: str | None = None
    ssh_port: int | None = None
    snmp_port: int | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    private_key_path: str | None = None


@dataclass(frozen=True)
class Credential:
    """How to log in to one unit. The password is decrypted: keep it in memory only."""

    serial: str
    host: str
    ssh_port: int
    snmp_port: int | None
    username: str
    password: str | None = field(repr=False)
    private_key_path: str | None
    host_key_fingerprint: str | None
    platform: str
