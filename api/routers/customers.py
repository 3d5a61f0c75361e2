"""Customers: look-up, units, line, contract items, V6 status and the registration notice."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Query, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api.auth import Staff, require
from api.deps import RequestIdDep, ServicesDep, SessionDep
from api.errors import ERROR_RESPONSES
from api.schemas import CustomerDetail, CustomerOut, ItemOut, LineOut, NoticeIn, UnitOut, V6Out
from fleetd import v6status
from fleetd.clock import JST
from fleetd.notice import render_notice
from inventory import audit, repo
from inventory.domain import AddressKind
from inventory.errors import NotFound, RuleViolation
from inventory.models import Customer, Unit
from inventory.rules import address_key

router = APIRouter(prefix="/customers", tags=["customers"], responses=ERROR_RESPONSES)
PDF = "application/pdf"
_REQUESTERS = {"owner": "オーナー", "shop_staff": "店舗スタッフ"}


@router.get("", dependencies=[require("read")], response_model=list[CustomerOut])
async def find_customers(
    session: SessionDep,
    code: Annotated[str | None, Query(description="The 9-digit customer code.")] = None,
    phone: Annotated[str | None, Query(description="With or without hyphens.")] = None,
    kana: Annotated[str | None, Query(description="The start of the kana reading.")] = None,
) -> list[CustomerOut]:
    """Find customers by code, phone number or kana reading (give exactly one)."""
    given = {k: v for k, v in {"code": code, "phone": phone, "kana": kana}.items() if v}
    if len(given) != 1:
        raise RuleViolation(
            "query",
            ", ".join(sorted(given)) or None,
            "give exactly one of code, phone or kana",
            hint="e.g. /customers?phone=03-1234-5678",
        )
    found: Sequence[Customer]
    if code:
        one = await repo.find_customer_by_code(session, code)
        found = [one] if one else []
    elif phone:
        found = await repo.find_customers_by_phone(session, phone)
    else:
        found = await repo.find_customers_by_kana(session, kana or "")
    return [CustomerOut.model_validate(c) for c in found]


@router.get("/{code}", dependencies=[require("read")], response_model=CustomerDetail)
async def show_customer(code: str, session: SessionDep) -> CustomerDetail:
    """A customer with its registered addresses."""
    return CustomerDetail.of(await repo.get_customer(session, code))


async def unit_views(session: AsyncSession, code: str, units: Sequence[Unit]) -> list[UnitOut]:
    serials = {u.id: u.serial for u in units}
    missing = {u.parent_id for u in units if u.parent_id and u.parent_id not in serials}
    if missing:
        rows = await session.execute(select(Unit.id, Unit.serial).where(Unit.id.in_(missing)))
        serials.update({row_id: serial for row_id, serial in rows})
    return [UnitOut.of(u, code, serials.get(u.parent_id) if u.parent_id else None) for u in units]


@router.get("/{code}/units", dependencies=[require("read")], response_model=list[UnitOut])
async def customer_units(code: str, session: SessionDep) -> list[UnitOut]:
    """The customer's units: parents, then children, then access points."""
    return await unit_views(session, code, await repo.list_units(session, code))


@router.get("/{code}/line", dependencies=[require("read")], response_model=LineOut)
async def customer_line(code: str, session: SessionDep) -> LineOut:
    """The customer's ISP line: type, 4over6 order state and date, tunnel parameters."""
    await repo.get_customer(session, code)
    line = await repo.find_line(session, code)
    if line is None:
        raise NotFound("ISP line for customer", code)
    return LineOut.of(line)


@router.get("/{code}/items", dependencies=[require("read")], response_model=list[ItemOut])
async def customer_items(code: str, session: SessionDep) -> list[ItemOut]:
    """The customer's contract items (equipment and the Original SSID add-on)."""
    items = await repo.list_contract_items(session, code)
    ids = {i.unit_id for i in items if i.unit_id is not None}
    serials: dict[int, str] = {}
    if ids:
        rows = await session.execute(select(Unit.id, Unit.serial).where(Unit.id.in_(ids)))
        serials = {row_id: serial for row_id, serial in rows}
    return [ItemOut.of(i, serials.get(i.unit_id) if i.unit_id else None) for i in items]


@router.get("/{code}/v6", dependencies=[require("cs", in_session=True)], response_model=V6Out)
async def v6_status(
    code: str,
    services: ServicesDep,
    session: SessionDep,
    live: Annotated[
        bool, Query(description="Read the parent units now (SNMP) before answering.")
    ] = False,
) -> V6Out:
    """Is this shop on V6? The 4over6 order, each parent unit's last reading and its age,
    the open and failed operations, and one verdict in words to read out on the phone."""
    now = services.clock.now()
    read: dict[str, str | None] | None = None
    if live:
        await repo.get_customer(session, code)
        # no transaction is held while the units answer, and the status reads what they said
        await session.rollback()
        read = await v6status.read_now(services.store, code, services.live_reader, now=now)
    status = await v6status.status(session, code)
    return V6Out.of(status, now, read)


def _business_wifi(units: Sequence[Unit]) -> Unit | None:
    # the business network is the same on every unit of a shop; the parent's is the reference
    ranked = sorted(units, key=lambda u: {"parent": 0, "ap": 1}.get(u.role, 2))
    return next(
        (
            u
            for u in ranked
            if u.intended_business_ssid and u.intended_business_passphrase_enc is not None
        ),
        None,
    )


@router.post(
    "/{code}/registration-notice",
    response_class=Response,
    responses={200: {"content": {PDF: {}}, "description": "The notice, ready to print and post."}},
)
async def registration_notice(
    code: str,
    body: NoticeIn,
    services: ServicesDep,
    request_id: RequestIdDep,
    staff: Annotated[Staff, require("cs")],
) -> Response:
    """The registration notice (business SSID and passphrase, with a Wi-Fi QR code) as a PDF
    to post to one of the customer's registered addresses: the only way a business passphrase
    leaves fleetd. Asked for by the shop's owner or staff (recorded); audited."""
    kind = AddressKind(body.destination.kind)
    async with services.store.transaction(write_lock=True) as session:
        customer = await repo.get_customer(session, code)
        address = customer.address(kind)
        if address is None:
            registered = ", ".join(a.kind for a in customer.addresses) or "none"
            raise RuleViolation(
                "destination.kind",
                kind.value,
                "a registration notice is posted only to one of the customer's registered "
                f"addresses, and this customer has no {kind.value} address",
                hint=f"registered: {registered}",
            )
        given = body.destination.address
        if given is not None and address_key(given) != address.address_key:
            raise RuleViolation(
                "destination.address",
                given,
                f"is not the customer's registered {kind.value} address: a registration "
                "notice is posted only to a registered address",
                hint="leave it out to use the registered one, or correct the registration first",
            )
        wifi = _business_wifi(await repo.list_units(session, code))
        if wifi is None:
            raise RuleViolation(
                "business_wifi",
                None,
                "no business SSID and passphrase are on record for this customer",
                hint="request a business Wi-Fi change first (POST /customers/{code}/business-wifi)",
            )
        passphrase = repo.intended_passphrase(wifi, services.box, "business") or ""
        requester = f"{body.requester.name} {_REQUESTERS[body.requester.kind]}"
        pdf = await asyncio.to_thread(
            render_notice,
            customer_code=customer.code,
            shop_name=customer.name,
            ssid=wifi.intended_business_ssid or "",
            passphrase=passphrase,
            recipient=address.recipient or customer.name,
            postal_code=address.postal_code,
            address=address.address,
            issued_on=services.clock.now().astimezone(JST).date(),
            requester=requester,
        )
        await audit.record(
            session,
            actor=staff.name,
            action="registration_notice",
            target=customer.code,
            request_id=request_id,
            after={
                "requester": body.requester.kind,
                "requester_name": body.requester.name,
                "destination": kind.value,
                "postal_code": address.postal_code,
                "ssid": wifi.intended_business_ssid,
            },
            detail=f"registration notice issued for posting to the {kind.value} address",
            at=services.clock.now(),
            redactor=services.redactor,
        )
    return Response(
        pdf,
        media_type=PDF,
        headers={"Content-Disposition": f'attachment; filename="registration-notice-{code}.pdf"'},
    )
