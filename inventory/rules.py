"""The rules of the U-SPOT service, checked at the boundary.

Every rule is a function named after the rule. An `assert_…` function returns nothing and
raises `RuleViolation(field, value, rule)` when the input breaks the rule; a `clean_…` function
checks a value and returns it in its stored form (`2001:DB8::1` → `2001:db8::1`). Nothing here
does I/O: callers look up what a rule needs (a parent unit, a stored customer code) and pass it
in. Secrets are never echoed: a violation on a password or passphrase carries `value=None`.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import NamedTuple

from inventory.domain import (
    ALL_TUNNEL_PARAMS,
    ITEM_ROLES,
    LEGACY_ITEMS,
    TUNNEL_PARAMS,
    ItemCode,
    ItemStatus,
    OrderState,
    Role,
    TunnelType,
)
from inventory.errors import RuleViolation

__all__ = [
    "RuleViolation",
    "RuleWarning",
    "Tunnel",
    "UnitFacts",
    "address_key",
    "assert_access_point_has_no_line",
    "assert_cancellation_date_fits_status",
    "assert_child_has_parent_of_same_customer",
    "assert_child_not_swapped_for_link_item",
    "assert_customer_code_format",
    "assert_customer_code_unchanged",
    "assert_item_not_legacy_for_new_order",
    "assert_only_child_has_parent",
    "assert_passphrase",
    "assert_role_unchanged",
    "assert_serial_format",
    "assert_serial_given_for_installed_unit",
    "assert_ssid",
    "assert_unit_password",
    "assert_v6_possible",
    "check_original_ssid",
    "clean_item_code",
    "clean_management_address",
    "clean_phone",
    "clean_port",
    "clean_postal_code",
    "clean_text",
    "clean_tunnel",
    "clean_username",
    "kana_key",
    "parse_original_ssid",
]


@dataclass(frozen=True)
class RuleWarning:
    """Accepted, but staff should know: e.g. an Original SSID longer than recommended."""

    field: str
    value: str
    note: str

    def __str__(self) -> str:
        return f"{self.field} {self.value!r}: {self.note}"


class UnitFacts(NamedTuple):
    """What the unit rules need to know about a stored (or to-be-stored) unit."""

    serial: str
    role: str
    customer_code: str


# --- identities -------------------------------------------------------------------------

_SERIAL = re.compile(r"US01[A-Z0-9]{8}")
_CUSTOMER_CODE = re.compile(r"[0-9]{9}")


def assert_serial_format(serial: str, *, field: str = "serial") -> None:
    """A serial is `US01` and eight upper-case letters or digits: 12 characters."""
    if not _SERIAL.fullmatch(serial):
        raise RuleViolation(
            field, serial, "a serial is US01 and 8 upper-case letters or digits (12 characters)"
        )


def assert_customer_code_format(code: str, *, field: str = "customer_code") -> None:
    """A customer code (顧客CD) is exactly nine digits."""
    if not _CUSTOMER_CODE.fullmatch(code):
        raise RuleViolation(field, code, "a customer code is 9 digits")


def assert_customer_code_unchanged(
    stored: str, new: str, *, what: str | None = None, field: str = "customer_code"
) -> None:
    """A customer code never changes once registered; nor does the customer a unit or item
    is registered to (`what` names it: "unit US01…", "item 42")."""
    if stored == new:
        return
    if what is None:
        rule = f"a customer code never changes once registered; this customer is {stored}"
    else:
        rule = f"a customer code never changes: {what} is registered to customer {stored}"
    raise RuleViolation(field, new, rule)


def assert_role_unchanged(serial: str, stored: str, new: str, *, field: str = "role") -> None:
    """A unit has one role for its whole life."""
    if stored != new:
        raise RuleViolation(
            field, new, f"a unit keeps its role for life: {serial} is registered as {stored}"
        )


# --- units ------------------------------------------------------------------------------


def assert_only_child_has_parent(role: str, parent_serial: str) -> None:
    """Only a child names a parent unit; a parent or access point is a child of nothing."""
    if role != Role.CHILD and parent_serial:
        raise RuleViolation(
            "parent_serial", parent_serial, f"only a child has a parent unit; this is a {role}"
        )


def assert_child_has_parent_of_same_customer(
    customer_code: str, parent_serial: str, parent: UnitFacts | None
) -> None:
    """A child belongs to one parent unit, which is a parent, at the same customer.

    `parent` is the unit `parent_serial` names, or None when no such unit is known.
    """
    if not parent_serial:
        raise RuleViolation("parent_serial", "", "a child names its parent unit's serial")
    if parent is None:
        raise RuleViolation(
            "parent_serial",
            parent_serial,
            "no such unit in the file or the inventory; a child's parent is registered first",
        )
    if parent.role != Role.PARENT:
        raise RuleViolation(
            "parent_serial",
            parent_serial,
            f"a child's parent is a parent unit; {parent_serial} is a {parent.role}",
        )
    if parent.customer_code != customer_code:
        raise RuleViolation(
            "parent_serial",
            parent_serial,
            f"a child's parent is at the same customer; {parent_serial} belongs to customer "
            f"{parent.customer_code}",
        )


def assert_access_point_has_no_line(role: str, line_type: str, *, field: str = "line_type") -> None:
    """An access point has no ISP line; a child uses its parent's line, not one of its own.
    `line_type` is any line fact given for the unit (empty: none)."""
    if not line_type:
        return
    if role == Role.AP:
        raise RuleViolation(field, line_type, "an access point has no ISP line")
    if role == Role.CHILD:
        raise RuleViolation(
            field,
            line_type,
            "a child has no ISP line of its own; its parent's line serves it",
        )


def assert_child_not_swapped_for_link_item(serial: str, role: str, link_item: bool) -> None:
    """A child is never replaced by a link item: a child is ordered as equipment."""
    if role == Role.CHILD and link_item:
        raise RuleViolation(
            "link_item",
            "yes",
            f"{serial or 'a child'} is a child: a child is never replaced by a link item, "
            "it is ordered as equipment (9604072)",
        )


def assert_v6_possible(
    serial: str, role: str, *, moved_by_customer: bool, order_state: str | None = None
) -> None:
    """Can this unit run in V6 mode? Only a parent has a WAN; a unit the customer moved by
    himself never does (the V6 line is bound to the original line); and when `order_state` is
    given, the partner ISP's 4over6 order must be complete."""
    if role != Role.PARENT:
        raise RuleViolation(
            "role", role, f"{serial}: only a parent has a WAN and can run in V6 mode"
        )
    if moved_by_customer:
        raise RuleViolation(
            "moved_by_customer",
            "yes",
            f"{serial} was moved by the customer: it can work on V4 but never on V6 "
            "(the V6 line is bound to the original line)",
        )
    if order_state is not None and order_state != OrderState.COMPLETE:
        raise RuleViolation(
            "v6_order_state",
            order_state,
            f"{serial}: the partner ISP's 4over6 order is not complete, the line cannot carry V6",
        )


# --- contract items ---------------------------------------------------------------------


def clean_item_code(value: str) -> ItemCode:
    """An item code is one of the service's contract items."""
    try:
        return ItemCode(value.upper())
    except ValueError:
        known = ", ".join(code.value for code in ItemCode)
        raise RuleViolation("item_code", value, f"not a U-SPOT item code ({known})") from None


def assert_item_not_legacy_for_new_order(item_code: str, status: str) -> None:
    """The legacy parents 9604070 (V6) and 9604074 (V4) take no new orders."""
    if item_code in LEGACY_ITEMS and status == ItemStatus.ORDERED:
        raise RuleViolation(
            "item_code",
            item_code,
            "a legacy item takes no new orders; order a U-SPOT_01 parent (9604076)",
        )


def assert_serial_given_for_installed_unit(item_code: str, status: str, serial: str) -> None:
    """A parent, child or AP item that was installed names its unit's serial."""
    installed = status in (ItemStatus.CONFIRMED, ItemStatus.TERMINATED)
    if installed and item_code in ITEM_ROLES and not serial:
        raise RuleViolation(
            "serial", "", f"a {status} equipment item names its unit's serial (US01…)"
        )


def assert_cancellation_date_fits_status(status: str, cancellation_date: date | None) -> None:
    """A terminated item (解約) has a cancellation effective date; an order that was cancelled
    before installation (キャンセル) or is still on order has none: a cancel is not a
    cancellation."""
    if status == ItemStatus.TERMINATED and cancellation_date is None:
        raise RuleViolation(
            "cancellation_date", "", "a terminated item has its cancellation effective date"
        )
    if status in (ItemStatus.ORDERED, ItemStatus.CANCELLED) and cancellation_date is not None:
        raise RuleViolation(
            "cancellation_date",
            cancellation_date.isoformat(),
            f"an {status} item has no cancellation date (a cancel before installation is "
            "not a cancellation)",
        )


# --- Wi-Fi ------------------------------------------------------------------------------

_HEX64 = re.compile(r"[0-9A-Fa-f]{64}")
_PASSPHRASE_RULE = "a passphrase is 8 to 63 printable ASCII characters or 64 hex digits"  # noqa: S105
ORIGINAL_SSID_RECOMMENDED = 15
# ASCII, typographic (U+2018, U+2019) and full-width (U+FF07) apostrophes
_QUOTES = "'\u2018\u2019\uff07"
_ORIGINAL_SSID = re.compile(rf"SSID\s*[{_QUOTES}](.*?)[{_QUOTES}]")


def assert_ssid(ssid: str, *, field: str = "ssid") -> None:
    """An SSID is 1 to 32 bytes of UTF-8 with no control characters."""
    size = len(ssid.encode("utf-8"))
    if not 1 <= size <= 32:
        raise RuleViolation(field, ssid, f"{size} bytes; an SSID is 1 to 32 bytes (UTF-8)")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in ssid):
        raise RuleViolation(field, ssid, "an SSID has no control characters")


def assert_passphrase(passphrase: str, *, field: str = "passphrase") -> None:
    """A Wi-Fi passphrase: 8 to 63 printable ASCII characters, or exactly 64 hex digits.
    The value is never repeated in the violation."""
    if _HEX64.fullmatch(passphrase):
        return
    if not all(0x20 <= ord(c) <= 0x7E for c in passphrase):
        raise RuleViolation(field, None, f"a character outside printable ASCII; {_PASSPHRASE_RULE}")
    if not 8 <= len(passphrase) <= 63:
        raise RuleViolation(field, None, f"{len(passphrase)} characters; {_PASSPHRASE_RULE}")


def parse_original_ssid(order_note: str) -> str | None:
    """The Original SSID an order note carries as `SSID'…'`, or None."""
    match = _ORIGINAL_SSID.search(order_note)
    return match.group(1) if match else None


def check_original_ssid(ssid: str, *, field: str = "original_ssid") -> list[RuleWarning]:
    """An Original SSID is an SSID (else RuleViolation); over 15 characters it is accepted
    with a warning, since 15 or fewer are recommended."""
    assert_ssid(ssid, field=field)
    if len(ssid) > ORIGINAL_SSID_RECOMMENDED:
        note = (
            f"the Original SSID is {len(ssid)} characters; {ORIGINAL_SSID_RECOMMENDED} or "
            "fewer are recommended (accepted)"
        )
        return [RuleWarning(field, ssid, note)]
    return []


# --- credentials ------------------------------------------------------------------------


def assert_unit_password(password: str, *, field: str = "password") -> None:
    """A unit password is 1 to 128 printable ASCII characters. Never echoed."""
    if not 1 <= len(password) <= 128 or not all(0x20 <= ord(c) <= 0x7E for c in password):
        raise RuleViolation(field, None, "a unit password is 1 to 128 printable ASCII characters")


def clean_username(value: str, *, field: str = "username") -> str:
    if not 1 <= len(value) <= 64 or not all(0x21 <= ord(c) <= 0x7E for c in value):
        raise RuleViolation(field, value, "a user name is 1 to 64 printable characters, no spaces")
    return value


_HOSTNAME = re.compile(
    r"(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9]"
    r"([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
)


def clean_management_address(value: str, *, field: str = "address") -> str:
    """A unit's management address: an IPv4 or IPv6 address, or a host name."""
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        pass
    if _HOSTNAME.fullmatch(value) and not value.replace(".", "").isdigit():
        return value.lower()
    raise RuleViolation(field, value, "not an IP address or host name")


def clean_port(value: str, *, field: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        raise RuleViolation(field, value, "a port is a whole number from 1 to 65535")
    return int(value)


# --- 4over6 tunnel ----------------------------------------------------------------------


@dataclass(frozen=True)
class Tunnel:
    """A line's 4over6 tunnel: its type and the parameters that type needs, in stored form."""

    type: TunnelType
    params: Mapping[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, str]:
        """As fleet.csv writes it: `type` plus the parameters (contract names)."""
        return {"type": self.type.value, **self.params}


def _ipv6(value: str) -> str:
    if "%" in value:
        raise ValueError("has a zone index")
    return str(ipaddress.IPv6Address(value))


def _aftr(value: str) -> str:
    if ":" in value:
        return _ipv6(value)
    if _HOSTNAME.fullmatch(value) and "." in value and value.rsplit(".", 1)[1].isalpha():
        return value.lower()
    raise ValueError("neither an IPv6 address nor a host name")


def _ea_length(value: str) -> str:
    if not value.isdigit() or not 0 <= int(value) <= 48:
        raise ValueError("not a whole number from 0 to 48")
    return str(int(value))


_PARAM_RULES: dict[str, tuple[Callable[[str], str], str]] = {
    "aftr": (_aftr, "the DS-Lite AFTR is an IPv6 address or a host name"),
    "br": (_ipv6, "the MAP-E BR is an IPv6 address"),
    "rule-ipv6-prefix": (
        lambda v: str(ipaddress.IPv6Network(v, strict=True)),
        "an IPv6 prefix with no bits after its length (e.g. 2001:db8:100::/40)",
    ),
    "rule-ipv4-prefix": (
        lambda v: str(ipaddress.IPv4Network(v, strict=True)),
        "an IPv4 prefix with no host bits (e.g. 203.0.113.0/24)",
    ),
    "ea-length": (_ea_length, "the EA-bits length is a whole number from 0 to 48"),
    "local": (_ipv6, "the IPIP local address is an IPv6 address"),
    "remote": (_ipv6, "the IPIP remote address is an IPv6 address"),
    "ipv4-address": (
        lambda v: str(ipaddress.IPv4Address(v)),
        "the IPIP IPv4 address is dotted decimal (e.g. 198.51.100.4)",
    ),
}
assert set(_PARAM_RULES) == set(ALL_TUNNEL_PARAMS)


def clean_tunnel(
    tunnel_type: str,
    params: Mapping[str, str],
    *,
    field_of: Callable[[str], str] = lambda name: f"tunnel.{name}",
) -> Tunnel:
    """Check a 4over6 tunnel as docs/unit-contract.md section 4.2 does: the type is known,
    every parameter it needs is present and valid, and no other type's parameter is given.
    `params` is keyed by contract name (`rule-ipv6-prefix`); `field_of` names a parameter in
    a violation the way the input spells it."""
    try:
        kind = TunnelType(tunnel_type)
    except ValueError:
        raise RuleViolation(
            field_of("type"), tunnel_type, "a tunnel type is ds-lite, map-e or ipip"
        ) from None
    needed = TUNNEL_PARAMS[kind]
    for name, value in params.items():
        if value and name not in needed:
            raise RuleViolation(field_of(name), value, f"not a parameter of a {kind} tunnel")
    out: dict[str, str] = {}
    for name in needed:
        value = params.get(name, "")
        if not value:
            raise RuleViolation(field_of(name), "", f"a {kind} tunnel needs {name}")
        check, rule = _PARAM_RULES[name]
        try:
            out[name] = check(value)
        except ValueError:
            raise RuleViolation(field_of(name), value, rule) from None
    return Tunnel(kind, out)


# --- customers --------------------------------------------------------------------------

# hyphens, dashes, the minus sign and the katakana long-vowel mark all get typed as "-"
_DASHES = "\u2010\u2011\u2013\u2014\u2212\u30fc"
_PHONE_JUNK = re.compile(rf"[\s\-(){_DASHES}]")


def clean_phone(value: str, *, field: str = "phone") -> str:
    """A Japanese phone number: 10 or 11 digits starting with 0; hyphens, spaces and
    parentheses allowed. Returns the digits (the search key)."""
    digits = _PHONE_JUNK.sub("", unicodedata.normalize("NFKC", value))
    if not re.fullmatch(r"0[0-9]{9,10}", digits):
        raise RuleViolation(
            field, value, "a phone number is 10 or 11 digits starting with 0 (hyphens allowed)"
        )
    return digits


def clean_postal_code(value: str, *, field: str) -> str:
    """A postal code: 7 digits, written NNN-NNNN (〒 and full-width digits accepted)."""
    text = unicodedata.normalize("NFKC", value).strip().lstrip("〒").strip()
    match = re.fullmatch(rf"([0-9]{{3}})[-{_DASHES}]?([0-9]{{4}})", text)
    if not match:
        raise RuleViolation(field, value, "a postal code is 7 digits (NNN-NNNN)")
    return f"{match.group(1)}-{match.group(2)}"


def clean_text(value: str, *, field: str, max_length: int, required: bool = True) -> str:
    """Free text (names, addresses): no control characters, not longer than `max_length`."""
    if required and not value:
        raise RuleViolation(field, value, "required")
    if len(value) > max_length:
        raise RuleViolation(field, value, f"at most {max_length} characters")
    if any(unicodedata.category(c) == "Cc" for c in value):
        raise RuleViolation(field, value, "no control characters (line breaks, tabs)")
    return value


def kana_key(kana: str) -> str:
    """The search form of a kana reading: half-width to full-width (NFKC), hiragana to
    katakana, no spaces, Latin upper case. `ｶﾌｪ ｷﾑﾗ`, `かふぇきむら` → `カフェキムラ`."""
    text = unicodedata.normalize("NFKC", kana)
    text = "".join(chr(ord(c) + 0x60) if "ぁ" <= c <= "ゖ" else c for c in text)
    return "".join(text.split()).upper()


def address_key(address: str) -> str:
    """The search form of an address: NFKC (full-width digits to ASCII), no spaces."""
    return "".join(unicodedata.normalize("NFKC", address).split())
