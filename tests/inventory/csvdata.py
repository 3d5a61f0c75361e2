"""Small import files for the tests, written the way the real exporters write them."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from inventory.imports.contracts import COLUMNS as CONTRACT_COLUMNS
from inventory.imports.v6orders import COLUMNS as ORDER_COLUMNS
from simulators.fleet import CSV_COLUMNS as FLEET_COLUMNS

CANARY = "Canary-9f3Kx!zQ"  # a unit password that must never be seen in plain text
SHOP = "138301482"
OTHER_SHOP = "138301483"
AP_SHOP = "138301484"


def write_csv(
    path: Path,
    header: Sequence[str],
    rows: Iterable[Mapping[str, str]],
    *,
    encoding: str = "utf-8",
) -> Path:
    with path.open("w", newline="", encoding=encoding) as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for row in rows:
            writer.writerow([row.get(name, "") for name in header])
    return path


def contract(**values: str) -> dict[str, str]:
    row = {
        "customer_code": SHOP,
        "customer_name": "カフェ木村",
        "customer_kana": "カフェキムラ",
        "phone": "03-1234-5678",
        "branch": "東京支店",
        "install_postal_code": "105-0001",
        "install_address": "東京都港区新橋1-2-3",
        "item_no": "C0001",
        "item_code": "9604076",
        "status": "confirmed",
        "serial": "US01BJH00022",
        "parent_serial": "",
        "line_type": "flets-east",
        "link_item": "no",
        "billing_start_month": "2024-05",
        "cancellation_date": "",
        "order_note": "",
    }
    row.update(values)
    return row


def other_shop(**values: str) -> dict[str, str]:
    base = {
        "customer_code": OTHER_SHOP,
        "customer_name": "美容室さくら",
        "customer_kana": "ビヨウシツサクラ",
        "phone": "06-6123-4567",
        "branch": "大阪支店",
        "install_postal_code": "530-0001",
        "install_address": "大阪府大阪市北区梅田1-1",
        "billing_name": "株式会社さくら",
        "billing_postal_code": "530-0002",
        "billing_address": "大阪府大阪市北区曽根崎2-2",
    }
    base.update(values)
    return contract(**base)


def shop_contracts() -> list[dict[str, str]]:
    """Two shops: a parent, its child and an Original SSID order; a parent elsewhere; and an
    access-point-only shop."""
    return [
        contract(),
        contract(
            item_no="C0002",
            item_code="9604072",
            serial="US01BJH00023",
            parent_serial="US01BJH00022",
            line_type="",
        ),
        contract(
            item_no="C0003",
            item_code="Z201000",
            serial="",
            line_type="",
            link_item="",
            order_note="SSID'CafeKimura_Free_WiFi' 設置時に変更",
        ),
        other_shop(item_no="C0004", serial="US01SAK00001", line_type="hikari-next"),
        contract(
            customer_code=AP_SHOP,
            customer_name="オフィス山田",
            customer_kana="オフィスヤマダ",
            phone="045-123-4567",
            install_postal_code="220-0001",
            install_address="神奈川県横浜市西区1-1",
            item_no="C0005",
            item_code="9604073",
            serial="US01APX00001",
            line_type="",
        ),
    ]


def write_contracts(path: Path, rows: Iterable[Mapping[str, str]], **kw: str) -> Path:
    return write_csv(path, [c.name for c in CONTRACT_COLUMNS], rows, **kw)


def order(**values: str) -> dict[str, str]:
    row = {"customer_code": SHOP, "order_state": "none", "order_date": ""}
    row.update(values)
    return row


def write_orders(path: Path, rows: Iterable[Mapping[str, str]]) -> Path:
    return write_csv(path, [c.name for c in ORDER_COLUMNS], rows)


DS_LITE = json.dumps({"aftr": "2001:db8:1a::1", "type": "ds-lite"}, sort_keys=True)
MAP_E = json.dumps(
    {
        "br": "2001:db8:3e0::1",
        "ea-length": "16",
        "rule-ipv4-prefix": "203.0.3.0/24",
        "rule-ipv6-prefix": "2001:db8:300::/40",
        "type": "map-e",
    },
    sort_keys=True,
)


def unit_row(**values: str) -> dict[str, str]:
    row = {
        "customer_code": SHOP,
        "serial": "US01BJH00022",
        "role": "parent",
        "parent_serial": "",
        "address": "127.40.0.1",
        "ssh_port": "2022",
        "snmp_port": "1161",
        "username": "admin",
        "password": CANARY,
        "line_type": "flets-east",
        "v6_ready": "no",
        "moved_by_customer": "no",
        "tunnel": DS_LITE,
        "link_item": "no",
    }
    row.update(values)
    return row


def fleet_rows() -> list[dict[str, str]]:
    """As `fleet-sim serve --inventory-out` writes them: a parent with a child, a parent on
    MAP-E that is V6-ready, and an access point."""
    return [
        unit_row(),
        unit_row(
            serial="US01BJH00023",
            role="child",
            parent_serial="US01BJH00022",
            address="127.40.0.2",
            password="child-pass-0001",
            line_type="",
            v6_ready="",
            moved_by_customer="",
            tunnel="",
        ),
        unit_row(
            customer_code=OTHER_SHOP,
            serial="US01SAK00001",
            address="127.40.0.3",
            password="other-pass-0001",
            line_type="hikari-next",
            v6_ready="yes",
            tunnel=MAP_E,
        ),
        unit_row(
            customer_code=AP_SHOP,
            serial="US01APX00001",
            role="ap",
            address="127.40.0.4",
            password="ap-pass-00001",
            line_type="",
            v6_ready="",
            moved_by_customer="",
            tunnel="",
        ),
    ]


def write_fleet(path: Path, rows: Iterable[Mapping[str, str]]) -> Path:
    return write_csv(path, FLEET_COLUMNS, rows)
