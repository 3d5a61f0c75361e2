"""Imports on both stores: all or nothing, every bad row reported, idempotent, updating."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from inventory import repo
from inventory.domain import AddressKind
from inventory.errors import RuleViolation, SecretKeyError
from inventory.imports import ImportReport, Problem, importer_for, run_import
from inventory.imports.fleet import COLUMNS as FLEET_IMPORT_COLUMNS
from inventory.models import ContractItem, Customer, Line, Unit
from inventory.secrets import SecretBox
from inventory.store import Store
from simulators.fleet import CSV_COLUMNS
from tests.inventory.csvdata import (
    AP_SHOP,
    CANARY,
    OTHER_SHOP,
    SHOP,
    contract,
    fleet_rows,
    order,
    shop_contracts,
    unit_row,
    write_contracts,
    write_fleet,
    write_orders,
)


async def _import(store: Store, kind: str, path: Path, **kw: Any) -> ImportReport:
    return await run_import(store, importer_for(kind), path, **kw)


async def _count(store: Store, model: Any) -> int:
    async with store.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


# --- the contract export ----------------------------------------------------------------


async def test_a_contract_export_registers_shops_units_and_items(
    store: Store, tmp_path: Path
) -> None:
    path = write_contracts(tmp_path / "contracts.csv", shop_contracts())
    report = await _import(store, "contracts", path)
    assert report.written and not report.problems
    assert (report.created, report.updated, report.unchanged) == (5, 0, 0)
    assert report.entities.counts["customers"]["created"] == 3
    assert report.entities.counts["units"]["created"] == 4
    assert report.entities.counts["lines"]["created"] == 2
    [notice] = report.notices  # the Original SSID is 20 characters: accepted, warned
    assert notice.line == 4 and "15 or fewer" in notice.text
    async with store.sessions() as session:
        shop = await repo.get_customer(session, SHOP)
        assert (shop.name, shop.kana_key, shop.phone_digits) == (
            "カフェ木村",
            "カフェキムラ",
            "0312345678",
        )
        holder = shop.address(AddressKind.CONTRACT_HOLDER)
        assert holder is not None and holder.address == "東京都港区新橋1-2-3"  # same as site
        other = await repo.get_customer(session, OTHER_SHOP)
        billing = other.address(AddressKind.BILLING)
        assert billing is not None and billing.recipient == "株式会社さくら"
        units = await repo.list_units(session, SHOP)
        assert [(u.serial, u.role) for u in units] == [
            ("US01BJH00022", "parent"),
            ("US01BJH00023", "child"),
        ]
        assert units[1].parent_id == units[0].id
        line = await repo.find_line(session, SHOP)
        assert line is not None and (line.line_type, line.v6_order_state) == ("flets-east", "none")
        assert await repo.find_line(session, AP_SHOP) is None  # an AP has no ISP line
        items = {i.item_no: i for i in await repo.list_contract_items(session, SHOP)}
        assert items["C0003"].original_ssid == "CafeKimura_Free_WiFi"
        assert items["C0001"].billing_start_month == date(2024, 5, 1)
        assert items["C0002"].unit_id == units[1].id


async def test_a_file_with_bad_rows_writes_nothing_and_lists_every_bad_row(
    store: Store, tmp_path: Path
) -> None:
    rows = [
        *shop_contracts(),
        contract(item_no="C0010", serial="US01bad", line_type="flets-east"),
        contract(item_no="C0011", item_code="9604074", status="ordered", serial=""),
        other_child := contract(
            item_no="C0012",
            customer_code=OTHER_SHOP,
            item_code="9604072",
            serial="US01SAK00002",
            parent_serial="US01BJH00022",  # a parent of another customer
            line_type="",
        ),
        contract(
            item_no="C0013", item_code="9604073", serial="US01APX00002", line_type="flets-west"
        ),
        contract(item_no="C0014", status="terminated", cancellation_date=""),
        contract(item_no="C0015", phone="1234", install_postal_code="105"),
    ]
    other_child.update(
        customer_name="美容室さくら",
        customer_kana="ビヨウシツサクラ",
        phone="06-6123-4567",
        branch="大阪支店",
        install_postal_code="530-0001",
        install_address="大阪府大阪市北区梅田1-1",
        billing_name="株式会社さくら",
        billing_postal_code="530-0002",
        billing_address="大阪府大阪市北区曽根崎2-2",
    )
    path = write_contracts(tmp_path / "contracts.csv", rows)
    report = await _import(store, "contracts", path)
    assert report.refused and not report.written
    assert {(p.line, p.field) for p in report.problems} == {
        (7, "serial"),
        (8, "item_code"),
        (9, "parent_serial"),
        (10, "line_type"),
        (11, "cancellation_date"),
        (12, "phone"),
        (12, "install_postal_code"),
    }
    assert Problem(7, "serial", "US01bad", _rule_of(report, 7)) in report.problems
    assert "no new orders" in _rule_of(report, 8)
    assert "belongs to customer 138301482" in _rule_of(report, 9)
    assert _rule_of(report, 10) == "an access point has no ISP line"
    text = "\n".join(report.lines())
    assert "nothing written, 6 rows break the rules" in text
    assert "line 7: serial 'US01bad': a serial is US01" in text
    for model in (Customer, Unit, Line, ContractItem):
        assert await _count(store, model) == 0


def _rule_of(report: ImportReport, line: int) -> str:
    return next(p.rule for p in report.problems if p.line == line)


async def test_skip_invalid_imports_the_good_rows_and_rejects_their_dependants(
    store: Store, tmp_path: Path
) -> None:
    rows = shop_contracts()
    rows[0]["install_postal_code"] = "1050"  # the parent row breaks a rule …
    path = write_contracts(tmp_path / "contracts.csv", rows)
    report = await _import(store, "contracts", path, skip_invalid=True)
    assert report.written and not report.refused
    rejected = {p.line: p for p in report.problems}
    assert set(rejected) == {2, 3}  # … and the child under it goes with it
    assert rejected[3].field == "parent_serial" and "line 2" in rejected[3].rule
    assert (report.created, report.rejected_rows) == (3, 2)
    assert "3 created, 0 updated, 0 unchanged, 2 rejected" in report.summary()
    async with store.sessions() as session:
        assert await repo.find_unit(session, "US01BJH00022") is None
        assert await repo.find_unit(session, "US01SAK00001") is not None


async def test_reimporting_the_same_export_changes_nothing(store: Store, tmp_path: Path) -> None:
    path = write_contracts(tmp_path / "contracts.csv", shop_contracts())
    await _import(store, "contracts", path)
    async with store.sessions() as session:
        before = {u.serial: u.updated_at for u in await repo.list_units(session, SHOP)}
    report = await _import(store, "contracts", path)
    assert (report.created, report.updated, report.unchanged) == (0, 0, 5)
    assert report.summary().endswith("5 rows: 0 created, 0 updated, 5 unchanged")
    async with store.sessions() as session:
        after = {u.serial: u.updated_at for u in await repo.list_units(session, SHOP)}
    assert after == before


async def test_a_later_export_updates_what_changed_and_nothing_else(
    store: Store, tmp_path: Path
) -> None:
    await _import(store, "contracts", write_contracts(tmp_path / "a.csv", shop_contracts()))
    later = shop_contracts()
    later[3].update(status="terminated", cancellation_date="2025-03-31")
    report = await _import(store, "contracts", write_contracts(tmp_path / "b.csv", later))
    assert (report.created, report.updated, report.unchanged) == (0, 1, 4)
    assert report.entities.counts["contract items"]["updated"] == 1
    async with store.sessions() as session:
        due = await repo.list_cancellations_due(session, date(2025, 3, 1), date(2025, 3, 31))
    assert [i.item_no for i in due] == ["C0004"]


async def test_an_item_or_unit_never_moves_to_another_customer(
    store: Store, tmp_path: Path
) -> None:
    await _import(store, "contracts", write_contracts(tmp_path / "a.csv", shop_contracts()))
    moved = contract(
        item_no="C0001",
        customer_code="138309999",
        customer_name="別の店",
        customer_kana="ベツノミセ",
    )
    report = await _import(store, "contracts", write_contracts(tmp_path / "b.csv", [moved]))
    assert report.refused
    [problem] = report.problems
    assert (problem.field, problem.value) == ("customer_code", "138309999")
    assert "never changes: item C0001 is registered to customer 138301482" in problem.rule


async def test_a_customer_reads_the_same_on_all_its_rows(store: Store, tmp_path: Path) -> None:
    rows = shop_contracts()
    rows[1]["customer_name"] = "カフェ木村 本店"
    report = await _import(store, "contracts", write_contracts(tmp_path / "c.csv", rows))
    [problem] = report.problems
    assert (problem.line, problem.field) == (3, "customer_name")
    assert "differs from line 2" in problem.rule


async def test_a_shift_jis_export_is_read(store: Store, tmp_path: Path) -> None:
    path = write_contracts(tmp_path / "sjis.csv", shop_contracts(), encoding="cp932")
    report = await _import(store, "contracts", path)
    assert report.written and report.created == 5
    async with store.sessions() as session:
        assert (await repo.get_customer(session, SHOP)).name == "カフェ木村"


async def test_a_dry_run_counts_but_writes_nothing(store: Store, tmp_path: Path) -> None:
    path = write_contracts(tmp_path / "contracts.csv", shop_contracts())
    report = await _import(store, "contracts", path, dry_run=True)
    assert not report.written and report.created == 5
    assert "dry run, nothing written; it would be 5 created" in report.summary()
    assert await _count(store, Customer) == 0


async def test_a_file_missing_columns_is_refused_whole(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "contracts.csv"
    path.write_text("customer_code,serial\n138301482,US01BJH00022\n")
    with pytest.raises(RuleViolation, match="missing: a contract export has these columns"):
        await _import(store, "contracts", path)


async def test_a_row_with_the_wrong_number_of_cells_is_reported(
    store: Store, tmp_path: Path
) -> None:
    path = write_contracts(tmp_path / "contracts.csv", shop_contracts())
    with path.open("a") as fh:
        fh.write("138301482,broken\n")
    report = await _import(store, "contracts", path)
    assert report.refused
    assert [(p.line, p.field) for p in report.problems] == [(7, "row")]


# --- the 4over6 order list --------------------------------------------------------------


async def test_an_order_that_became_complete_updates_only_that_line(
    store: Store, tmp_path: Path
) -> None:
    await _import(store, "contracts", write_contracts(tmp_path / "c.csv", shop_contracts()))
    first = [
        order(order_state="requested", order_date="2025-01-10"),
        order(customer_code=OTHER_SHOP, order_state="none"),
    ]
    report = await _import(store, "v6-orders", write_orders(tmp_path / "o1.csv", first))
    assert (report.created, report.updated, report.unchanged) == (0, 1, 1)
    later = [
        order(
            order_state="complete",
            order_date="2025/02/03",
            tunnel_type="ds-lite",
            aftr="2001:DB8:1A::1",
        ),
        order(customer_code=OTHER_SHOP, order_state="none"),
    ]
    report = await _import(store, "v6-orders", write_orders(tmp_path / "o2.csv", later))
    assert (report.created, report.updated, report.unchanged) == (0, 1, 1)
    again = await _import(store, "v6-orders", write_orders(tmp_path / "o3.csv", later))
    assert (again.created, again.updated, again.unchanged) == (0, 0, 2)
    async with store.sessions() as session:
        line = await repo.find_line(session, SHOP)
    assert line is not None
    assert (line.v6_order_state, line.v6_order_date) == ("complete", date(2025, 2, 3))
    assert line.tunnel is not None and line.tunnel.as_dict() == {
        "type": "ds-lite",
        "aftr": "2001:db8:1a::1",
    }


async def test_an_order_list_row_needs_a_registered_line(store: Store, tmp_path: Path) -> None:
    await _import(store, "contracts", write_contracts(tmp_path / "c.csv", shop_contracts()))
    rows = [
        order(customer_code="138309999", order_state="requested"),
        order(customer_code=AP_SHOP, order_state="requested"),
        order(order_state="finished"),
        order(order_state="complete", tunnel_type="map-e", br="2001:db8::1"),
        order(order_state="requested", aftr="2001:db8::1"),
    ]
    report = await _import(store, "v6-orders", write_orders(tmp_path / "o.csv", rows))
    assert report.refused
    fields = {p.line: (p.field, p.rule) for p in report.problems}
    assert fields[2][0] == "customer_code" and "import the contract export first" in fields[2][1]
    assert fields[3][0] == "customer_code" and "no ISP line" in fields[3][1]
    assert fields[4][0] == "order_state"
    assert fields[5] == ("rule_ipv6_prefix", "a map-e tunnel needs rule-ipv6-prefix")
    assert fields[6][0] == "tunnel_type"


async def test_the_latest_order_of_a_customer_wins(store: Store, tmp_path: Path) -> None:
    await _import(store, "contracts", write_contracts(tmp_path / "c.csv", shop_contracts()))
    rows = [
        order(order_state="requested", order_date="2025-03-01"),  # filed again after the NG
        order(order_state="ng", order_date="2025-02-01"),
    ]
    report = await _import(store, "v6-orders", write_orders(tmp_path / "o.csv", rows))
    assert report.written
    assert [n.line for n in report.notices] == [3]
    async with store.sessions() as session:
        line = await repo.find_line(session, SHOP)
    assert line is not None and line.v6_order_state == "requested"


# --- the fleet file ---------------------------------------------------------------------


def test_the_fleet_import_reads_the_simulators_columns() -> None:
    assert tuple(c.name for c in FLEET_IMPORT_COLUMNS) == CSV_COLUMNS


async def test_the_fleet_file_registers_units_and_how_to_reach_them(
    store: Store, box: SecretBox, tmp_path: Path
) -> None:
    path = write_fleet(tmp_path / "fleet.csv", fleet_rows())
    report = await _import(store, "fleet", path, box=box)
    assert report.written and (report.created, report.updated, report.unchanged) == (4, 0, 0)
    async with store.sessions() as session:
        parent = await repo.get_unit(session, "US01BJH00022")
        credential = repo.unit_credential(parent, box)
        assert (credential.host, credential.ssh_port, credential.snmp_port) == (
            "127.40.0.1",
            2022,
            1161,
        )
        assert (credential.username, credential.password) == ("admin", CANARY)
        child = await repo.get_unit(session, "US01BJH00023")
        assert child.parent_id == parent.id and child.role == "child"
        other = await repo.find_line(session, OTHER_SHOP)
        assert other is not None and other.v6_order_state == "complete"
        assert other.tunnel is not None and other.tunnel.params["ea-length"] == "16"
        assert (await repo.get_customer(session, AP_SHOP)).name == ""  # code only, for now
    again = await _import(store, "fleet", path, box=box)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 4)


async def test_a_new_fleet_file_updates_a_password_and_a_v6_state(
    store: Store, box: SecretBox, tmp_path: Path
) -> None:
    await _import(store, "fleet", write_fleet(tmp_path / "a.csv", fleet_rows()), box=box)
    rows = fleet_rows()
    rows[0].update(password="a-new-password-1", v6_ready="yes")
    report = await _import(store, "fleet", write_fleet(tmp_path / "b.csv", rows), box=box)
    assert (report.created, report.updated, report.unchanged) == (0, 1, 3)
    assert report.entities.counts["units"]["updated"] == 1
    assert report.entities.counts["lines"]["updated"] == 1
    async with store.sessions() as session:
        unit = await repo.get_unit(session, "US01BJH00022")
        assert repo.unit_credential(unit, box).password == "a-new-password-1"
        line = await repo.find_line(session, SHOP)
    assert line is not None and line.v6_order_state == "complete"


async def test_the_fleet_file_keeps_the_rules(store: Store, box: SecretBox, tmp_path: Path) -> None:
    rows = [
        *fleet_rows(),
        unit_row(
            serial="US01APX00002",
            role="ap",
            customer_code=AP_SHOP,
            address="127.40.0.9",
            tunnel="",
            v6_ready="",
            moved_by_customer="",
        ),  # line_type given: refused
        unit_row(
            serial="US01BJH00024",
            role="child",
            parent_serial="US01BJH00022",
            address="127.40.0.10",
            line_type="",
            v6_ready="",
            moved_by_customer="",
            tunnel="",
            link_item="yes",
        ),
        unit_row(serial="US01BJH00025", address="127.40.0.1", password="short pass"),
        unit_row(
            serial="US01BJH00026",
            address="127.40.0.11",
            tunnel='{"type": "ds-lite"}',
            password="\x01bad",
        ),
    ]
    report = await _import(store, "fleet", write_fleet(tmp_path / "fleet.csv", rows), box=box)
    assert report.refused
    found = {(p.line, p.field): p for p in report.problems}
    assert found[6, "line_type"].rule == "an access point has no ISP line"
    assert "never replaced by a link item" in found[7, "link_item"].rule
    assert "also the address of US01BJH00022" in found[8, "address"].rule
    assert found[9, "tunnel.aftr"].rule == "a ds-lite tunnel needs aftr"
    assert found[9, "password"].value is None  # never echoed
    assert CANARY not in "\n".join(report.lines())
    assert await _count(store, Unit) == 0


async def test_the_fleet_file_needs_the_key(store: Store, tmp_path: Path) -> None:
    path = write_fleet(tmp_path / "fleet.csv", fleet_rows())
    with pytest.raises(SecretKeyError, match="FLEETD_SECRET_KEY"):
        await _import(store, "fleet", path)
    await _import(store, "fleet", path, box=SecretBox(b"\x01" * 32))
    with pytest.raises(SecretKeyError, match="give fleetd the key it was set up with"):
        await _import(store, "fleet", path, box=SecretBox(b"\x02" * 32))


async def test_contracts_then_fleet_fill_in_one_unit(
    store: Store, box: SecretBox, tmp_path: Path
) -> None:
    await _import(store, "contracts", write_contracts(tmp_path / "c.csv", shop_contracts()))
    report = await _import(store, "fleet", write_fleet(tmp_path / "f.csv", fleet_rows()), box=box)
    assert (report.created, report.updated) == (0, 4)
    assert report.entities.counts["customers"]["unchanged"] == 3
    async with store.sessions() as session:
        shop = await repo.get_customer(session, SHOP)
        assert shop.name == "カフェ木村"  # the fleet file never touches customer details
        unit = await repo.get_unit(session, "US01APX00001")
        assert unit.mgmt_address == "127.40.0.4"


async def test_an_import_that_fails_half_way_leaves_the_store_as_it_was(
    store: Store, box: SecretBox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _import(store, "contracts", write_contracts(tmp_path / "c.csv", shop_contracts()))
    real = repo.merge_unit
    calls = 0

    def crash_on_the_third_unit(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("the daemon was killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(repo, "merge_unit", crash_on_the_third_unit)
    rows = fleet_rows()
    with pytest.raises(RuntimeError, match="killed"):
        await _import(store, "fleet", write_fleet(tmp_path / "f.csv", rows), box=box)
    async with store.sessions() as session:
        units = await repo.list_units(session, SHOP)
        assert [u.mgmt_address for u in units] == [None, None]  # the first units were undone
        line = await repo.find_line(session, OTHER_SHOP)
        assert line is not None and line.v6_order_state == "none"
    assert await _count(store, Unit) == 4


async def test_the_examples_in_the_docs_import_as_documented(store: Store, tmp_path: Path) -> None:
    doc = (Path(__file__).parents[2] / "docs" / "imports.md").read_text()
    contracts, orders = re.findall(r"```csv\n(.*?)```", doc, re.S)
    (tmp_path / "contracts.csv").write_text(contracts)
    (tmp_path / "orders.csv").write_text(orders)
    first = await _import(store, "contracts", tmp_path / "contracts.csv")
    assert first.written and first.created == 4 and not first.problems
    assert [n.text for n in first.notices] == []
    second = await _import(store, "v6-orders", tmp_path / "orders.csv")
    assert second.written and second.updated == 2 and not second.problems
