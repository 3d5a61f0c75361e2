"""Repository functions on both stores: customers, lines, items, units, their rules."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy.exc import IntegrityError

from inventory import repo
from inventory.domain import AddressKind
from inventory.errors import NotFound, RuleViolation, SecretKeyError
from inventory.records import AddressData, ContractItemData, CustomerData, LineData, UnitData
from inventory.repo import Change
from inventory.rules import clean_tunnel
from inventory.secrets import SecretBox
from inventory.store import Store

SHOP = CustomerData(
    code="138301482",
    name="カフェ木村",
    kana="カフェキムラ",
    phone="03-1234-5678",
    branch="東京支店",
    addresses=(
        AddressData(AddressKind.INSTALLATION, "東京都港区新橋1-2-3", "105-0001", "カフェ木村"),
        AddressData(AddressKind.CONTRACT_HOLDER, "東京都港区新橋1-2-3", "105-0001", "木村太郎"),
        AddressData(AddressKind.BILLING, "東京都千代田区丸の内1-1", "100-0005", "木村商事"),
    ),
)
OTHER = CustomerData("138301483", "美容室さくら", "ビヨウシツサクラ", "06-6123-4567")
PARENT = UnitData("US01BJH00022", SHOP.code, "parent")
CHILD = UnitData("US01BJH00023", SHOP.code, "child", parent_serial=PARENT.serial)


async def _shop(store: Store, *, line: LineData | None = None) -> None:
    async with store.transaction() as session:
        await repo.upsert_customer(session, SHOP)
        await repo.upsert_customer(session, OTHER)
        await repo.upsert_line(session, SHOP.code, line or LineData(line_type="flets-east"))
        await repo.upsert_unit(session, PARENT)
        await repo.upsert_unit(session, CHILD)


async def test_a_customer_is_created_then_unchanged_then_updated(store: Store) -> None:
    async with store.transaction() as session:
        first = await repo.upsert_customer(session, SHOP)
    assert first.change == Change.CREATED
    stamp = first.obj.updated_at
    async with store.transaction() as session:
        again = await repo.upsert_customer(session, SHOP)
    assert again.change == Change.UNCHANGED
    async with store.sessions() as session:
        assert (await repo.get_customer(session, SHOP.code)).updated_at == stamp
    moved_billing = (
        *SHOP.addresses[:2],
        AddressData(AddressKind.BILLING, "大阪府大阪市北区梅田1-1", "530-0001", "木村商事"),
    )
    async with store.transaction() as session:
        changed = await repo.upsert_customer(
            session, CustomerData(**{**SHOP.__dict__, "addresses": moved_billing})
        )
    assert changed.change == Change.UPDATED
    async with store.sessions() as session:
        customer = await repo.get_customer(session, SHOP.code)
        billing = customer.address(AddressKind.BILLING)
        assert billing is not None and billing.postal_code == "530-0001"
        assert [a.kind for a in customer.addresses] == sorted(a.value for a in AddressKind)


async def test_a_stored_customers_code_never_changes(store: Store) -> None:
    async with store.transaction() as session:
        customer = (await repo.upsert_customer(session, SHOP)).obj
    async with store.transaction() as session:
        customer = await repo.get_customer(session, SHOP.code)
        with pytest.raises(RuleViolation, match="never changes") as caught:
            customer.code = "999999999"
    assert caught.value.field == "customer_code"
    async with store.sessions() as session:
        assert (await repo.get_customer(session, SHOP.code)).code == SHOP.code


async def test_customers_are_found_by_code_phone_kana_and_address(store: Store) -> None:
    await _shop(store)
    async with store.sessions() as session:
        assert (await repo.find_customer_by_code(session, SHOP.code)) is not None
        assert await repo.find_customer_by_code(session, "000000000") is None
        with pytest.raises(NotFound, match="no customer 000000000"):
            await repo.get_customer(session, "000000000")
        by_phone = await repo.find_customers_by_phone(session, "0312345678")
        assert [c.code for c in by_phone] == [SHOP.code]
        for kana in ("かふぇ", "ｶﾌｪｷﾑﾗ", "カフェ キム"):
            assert [c.code for c in await repo.find_customers_by_kana(session, kana)] == [SHOP.code]
        assert await repo.find_customers_by_kana(session, "%") == []  # no wildcards
        found = await repo.find_customers_by_address(session, "東京都千代田区")  # billing
        assert [c.code for c in found] == [SHOP.code]
        assert await repo.find_customers_by_address(session, "港区") == []  # prefix search


async def test_units_of_a_customer_parents_first(store: Store) -> None:
    await _shop(store)
    async with store.transaction() as session:
        await repo.upsert_unit(session, UnitData("US01APX00001", SHOP.code, "ap"))
    async with store.sessions() as session:
        units = await repo.list_units(session, SHOP.code)
        assert [(u.serial, u.role) for u in units] == [
            ("US01BJH00022", "parent"),
            ("US01BJH00023", "child"),
            ("US01APX00001", "ap"),
        ]
        children = await repo.list_children(session, PARENT.serial)
        assert [c.serial for c in children] == [CHILD.serial]
        assert units[1].parent_id == units[0].id
        assert units[0].platform == "uspot"


async def test_a_child_needs_a_parent_unit_of_its_customer(store: Store) -> None:
    await _shop(store)
    async with store.transaction() as session:
        with pytest.raises(RuleViolation, match="belongs to customer 138301482"):
            await repo.upsert_unit(
                session, UnitData("US01BJH00099", OTHER.code, "child", parent_serial=PARENT.serial)
            )
        with pytest.raises(RuleViolation, match="a child's parent is a parent unit"):
            await repo.upsert_unit(
                session, UnitData("US01BJH00099", SHOP.code, "child", parent_serial=CHILD.serial)
            )
        with pytest.raises(RuleViolation, match="never replaced by a link item"):
            await repo.upsert_unit(
                session, CHILD.__class__(**{**CHILD.__dict__, "link_item": True})
            )


async def test_a_unit_keeps_its_customer_and_role(store: Store) -> None:
    await _shop(store)
    async with store.transaction() as session:
        with pytest.raises(RuleViolation, match="registered to customer 138301482"):
            await repo.upsert_unit(session, UnitData(PARENT.serial, OTHER.code, "parent"))
        with pytest.raises(RuleViolation, match="keeps its role"):
            await repo.upsert_unit(session, UnitData(PARENT.serial, SHOP.code, "ap"))


async def test_the_database_refuses_a_child_without_a_parent(store: Store) -> None:
    await _shop(store)
    with pytest.raises(IntegrityError):
        async with store.transaction() as session:
            child = await repo.get_unit(session, CHILD.serial)
            child.parent_id = None  # past the rules: the CHECK constraint still holds


async def test_credentials_are_stored_encrypted_and_given_back_to_drivers(
    store: Store, box: SecretBox
) -> None:
    await _shop(store)
    data = UnitData(
        PARENT.serial,
        SHOP.code,
        "parent",
        mgmt_address="127.20.0.1",
        ssh_port=2022,
        snmp_port=1161,
        username="admin",
        password="0d175938e9ccb2a0",
    )
    async with store.transaction() as session:
        assert (await repo.upsert_unit(session, data, box)).change == Change.UPDATED
    async with store.transaction() as session:
        assert (await repo.upsert_unit(session, data, box)).change == Change.UNCHANGED
        unit = await repo.get_unit(session, PARENT.serial)
        assert unit.password_enc is not None and unit.password_enc.startswith(f"v1:{box.kid}:")
        credential = repo.unit_credential(unit, box)
    assert credential.password == "0d175938e9ccb2a0"
    assert (credential.host, credential.ssh_port, credential.snmp_port) == (
        "127.20.0.1",
        2022,
        1161,
    )
    assert "0d175938e9ccb2a0" not in repr(credential)
    with pytest.raises(SecretKeyError, match="secret key is needed"):
        repo.unit_credential(unit, None)
    async with store.sessions() as session:
        child = await repo.get_unit(session, CHILD.serial)
        with pytest.raises(NotFound, match="management access"):
            repo.unit_credential(child, box)


async def test_intended_wifi_keeps_passphrases_encrypted(store: Store, box: SecretBox) -> None:
    await _shop(store)
    async with store.transaction() as session:
        up = await repo.set_intended_wifi(
            session, PARENT.serial, box, "business", ssid="Cafe Biz", passphrase="kimura-biz-2025"
        )
        assert up.change == Change.UPDATED
        again = await repo.set_intended_wifi(
            session, PARENT.serial, box, "business", passphrase="kimura-biz-2025"
        )
        assert again.change == Change.UNCHANGED
    async with store.sessions() as session:
        unit = await repo.get_unit(session, PARENT.serial)
        assert unit.intended_business_ssid == "Cafe Biz"
        assert "kimura-biz-2025" not in (unit.intended_business_passphrase_enc or "")
        assert repo.intended_passphrase(unit, box, "business") == "kimura-biz-2025"
        assert repo.intended_passphrase(unit, box, "guest") is None
        with pytest.raises(RuleViolation) as caught:
            await repo.set_intended_wifi(session, PARENT.serial, box, "guest", passphrase="short")
        assert caught.value.value is None and "short" not in str(caught.value)


async def test_v6_is_refused_for_a_unit_the_customer_moved(store: Store) -> None:
    tunnel = clean_tunnel("ds-lite", {"aftr": "2001:db8:1a::1"})
    await _shop(
        store,
        line=LineData(
            line_type="flets-east", moved_by_customer=True, v6_order_state="complete", tunnel=tunnel
        ),
    )
    async with store.transaction() as session:
        with pytest.raises(RuleViolation, match="never on V6"):
            await repo.set_intended_wan(session, PARENT.serial, "ipoe")
        with pytest.raises(RuleViolation, match="only a parent"):
            await repo.set_intended_wan(session, CHILD.serial, "ipoe")
        await repo.upsert_line(session, SHOP.code, LineData(moved_by_customer=False))
        up = await repo.set_intended_wan(session, PARENT.serial, "ipoe")
    assert up.change == Change.UPDATED
    assert up.obj.intended_wan_mode == "ipoe"
    assert up.obj.intended_tunnel == {"type": "ds-lite", "aftr": "2001:db8:1a::1"}


async def test_observations_keep_the_last_good_read(store: Store) -> None:
    await _shop(store)
    async with store.transaction() as session:
        await repo.record_observation(
            session,
            PARENT.serial,
            reachable=True,
            values={
                "wan_mode": "ipoe",
                "tunnel_state": "up",
                "account_state": "active",
                "lamp_u": "on",
            },
        )
    async with store.transaction() as session:
        await repo.record_observation(session, PARENT.serial, reachable=False, error="timed out")
    async with store.sessions() as session:
        seen = await repo.get_observation(session, PARENT.serial)
    assert seen is not None
    assert (seen.reachable, seen.wan_mode, seen.tunnel_state) == (False, "ipoe", "up")
    assert seen.read_values == {
        "wan_mode": "ipoe",
        "tunnel_state": "up",
        "account_state": "active",
        "lamp_u": "on",
    }
    assert seen.last_error == "timed out" and seen.last_error_at is not None
    assert seen.observed_at is not None and seen.observed_at < seen.last_error_at


async def test_contract_items_and_cancellations_due(store: Store) -> None:
    await _shop(store)
    item = ContractItemData(
        "C0001",
        SHOP.code,
        "9604076",
        "confirmed",
        serial=PARENT.serial,
        cancellation_date=date(2025, 3, 31),
    )
    async with store.transaction() as session:
        assert (await repo.upsert_contract_item(session, item)).change == Change.CREATED
        assert (await repo.upsert_contract_item(session, item)).change == Change.UNCHANGED
        with pytest.raises(RuleViolation, match="no new orders"):
            await repo.upsert_contract_item(
                session, ContractItemData("C0002", SHOP.code, "9604074", "ordered")
            )
        with pytest.raises(RuleViolation, match="never changes"):
            await repo.upsert_contract_item(
                session, ContractItemData("C0001", OTHER.code, "9604076", "confirmed")
            )
    async with store.sessions() as session:
        due = await repo.list_cancellations_due(session, date(2025, 3, 1), date(2025, 3, 31))
        assert [i.item_no for i in due] == ["C0001"]
        assert await repo.list_cancellations_due(session, date(2025, 4, 1), date(2025, 4, 30)) == []
        assert [i.item_no for i in await repo.list_contract_items(session, SHOP.code)] == ["C0001"]


async def test_a_database_keeps_to_the_key_it_was_set_up_with(store: Store) -> None:
    first, second = b"\x01" * 32, b"\x02" * 32
    box = SecretBox(first)
    async with store.transaction() as session:
        await repo.check_secret_key(session, box)
    async with store.transaction() as session:
        await repo.check_secret_key(session, box)  # the same key again
    other = SecretBox(second)
    async with store.transaction() as session:
        with pytest.raises(SecretKeyError, match=f"encrypted with key {box.kid}") as caught:
            await repo.check_secret_key(session, other)
    assert other.kid in str(caught.value) and "FLEETD_SECRET_KEY" in str(caught.value)
    rotated = SecretBox(second, old_keys=[first])
    async with store.transaction() as session:
        await repo.check_secret_key(session, rotated)  # a new key with the old one beside it
    async with store.transaction() as session:
        await repo.check_secret_key(session, SecretBox(second))  # now registered too
