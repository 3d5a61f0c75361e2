"""Imports and the audit log through the API."""

from __future__ import annotations

from inventory.store import Store
from tests.api.conftest import CODE, Api, contracts_csv

CSV = {"Content-Type": "text/csv"}


async def test_an_import_checks_first_then_writes_and_is_audited(api: Api, store: Store) -> None:
    admin = {**api.as_("admin"), **CSV}
    renamed = contracts_csv(customer_name="カフェ木村 新橋店")
    dry = await api.client.post(
        "/imports/contracts", params={"dry_run": "true"}, content=renamed, headers=admin
    )
    assert dry.status_code == 200, dry.text
    assert dry.json()["dry_run"] is True and dry.json()["written"] is False
    assert dry.json()["updated"] == 1
    shop = await api.client.get(f"/customers/{CODE}", headers=admin)
    assert shop.json()["name"] == "カフェ木村"  # a dry run writes nothing
    done = await api.client.post("/imports/contracts", content=renamed, headers=admin)
    assert done.json()["written"] is True
    shop = await api.client.get(f"/customers/{CODE}", headers=admin)
    assert shop.json()["name"] == "カフェ木村 新橋店"
    log = await api.client.get("/audit", params={"actor": "admin-user"}, headers=admin)
    assert [e["action"] for e in log.json()] == ["import_contracts", "import_contracts"]
    assert log.json()[0]["after"]["written"] is True


async def test_an_import_with_a_bad_row_is_refused_whole(api: Api) -> None:
    admin = {**api.as_("admin"), **CSV}
    bad = contracts_csv(serial="US01apx00001", customer_name="別の名前")
    refused = await api.client.post("/imports/contracts", content=bad, headers=admin)
    assert refused.status_code == 422
    body = refused.json()
    assert body["error"] == "import_refused"
    assert (body["field"], body["value"]) == ("serial", "US01apx00001")
    assert body["rule"].startswith("line 2: ")
    assert body["problems"][0]["line"] == 2
    shop = await api.client.get(f"/customers/{CODE}", headers=admin)
    assert shop.json()["name"] == "カフェ木村"
    unreadable = await api.client.post(
        "/imports/contracts", params={"encoding": "ascii"}, content=bad, headers=admin
    )
    assert unreadable.status_code == 422 and unreadable.json()["field"] == "body"
    assert "/tmp" not in unreadable.text
    assert (await api.client.post("/imports/cars", content=b"", headers=admin)).status_code == 422


async def test_the_audit_log_is_read_by_auditors_newest_first_and_paged(api: Api) -> None:
    tech = api.as_("tech")
    for _ in range(3):
        await api.client.post(f"/customers/{CODE}/guest-rotate", headers=tech)
    auditor = api.as_("auditor")
    first = (await api.client.get("/audit", params={"limit": 2}, headers=auditor)).json()
    assert [e["action"] for e in first] == ["request_guest_rotate"] * 2
    rest = await api.client.get(
        "/audit", params={"before_id": first[-1]["id"], "target": CODE}, headers=auditor
    )
    assert [e["action"] for e in rest.json()] == ["request_guest_rotate", "seed"]
    assert (await api.client.get("/audit", headers=tech)).status_code == 403
