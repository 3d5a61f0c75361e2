"""Repository functions: the only code that reads and writes inventory rows.

Everything takes an `AsyncSession` and leaves the transaction to the caller
(`async with store.transaction() as session: …`). Writes come in two layers:

- `upsert_…(session, data)`: look up, check the rules, create or update; returns
  `Upserted(obj, change)` where `change` is created / updated / unchanged;
- `merge_…(session, existing, data, …)`: the same without the look-up, for bulk callers
  (imports) that load rows in batches with `customers_by_code`, `units_by_serial` … first.

A value equal to the stored one is not written, so an unchanged row keeps its `updated_at`;
a secret is compared by decrypting the stored token, never by its ciphertext.
"""

from inventory.repo._base import (
    Change,
    Upserted,
    customer_codes_by_id,
    customers_by_code,
    items_by_no,
    lines_by_customer,
    units_by_serial,
)
from inventory.repo.customers import (
    check_contract_item,
    ensure_customer,
    find_customer_by_code,
    find_customers_by_address,
    find_customers_by_kana,
    find_customers_by_phone,
    find_line,
    get_customer,
    list_cancellations_due,
    list_contract_items,
    merge_contract_item,
    merge_customer,
    merge_line,
    upsert_contract_item,
    upsert_customer,
    upsert_line,
)
from inventory.repo.keys import check_secret_key
from inventory.repo.units import (
    ACCESS_COLUMNS,
    INTENDED_WIFI,
    PASSPHRASE,
    PASSWORD,
    apply_intended_account_state,
    apply_intended_wifi,
    check_intended_wifi,
    check_unit,
    find_unit,
    get_observation,
    get_unit,
    intended_passphrase,
    intended_wifi_changes,
    list_children,
    list_units,
    merge_unit,
    pin_host_key,
    record_observation,
    remove_unit,
    set_intended_account_state,
    set_intended_wan,
    set_intended_wifi,
    unit_credential,
    upsert_unit,
)

__all__ = [
    "ACCESS_COLUMNS",
    "INTENDED_WIFI",
    "PASSPHRASE",
    "PASSWORD",
    "Change",
    "Upserted",
    "apply_intended_account_state",
    "apply_intended_wifi",
    "check_contract_item",
    "check_intended_wifi",
    "check_secret_key",
    "check_unit",
    "customer_codes_by_id",
    "customers_by_code",
    "ensure_customer",
    "find_customer_by_code",
    "find_customers_by_address",
    "find_customers_by_kana",
    "find_customers_by_phone",
    "find_line",
    "find_unit",
    "get_customer",
    "get_observation",
    "get_unit",
    "intended_passphrase",
    "intended_wifi_changes",
    "items_by_no",
    "lines_by_customer",
    "list_cancellations_due",
    "list_children",
    "list_contract_items",
    "list_units",
    "merge_contract_item",
    "merge_customer",
    "merge_line",
    "merge_unit",
    "pin_host_key",
    "record_observation",
    "remove_unit",
    "set_intended_account_state",
    "set_intended_wan",
    "set_intended_wifi",
    "unit_credential",
    "units_by_serial",
    "upsert_contract_item",
    "upsert_customer",
    "upsert_line",
    "upsert_unit",
]
