"""The configuration schema of a simulated U-SPOT unit: paths, roles, value rules.

A configuration is a flat mapping from a path (``"wlan guest ssid"``) to a string value,
exactly as the CLI's ``set <path> <value>`` writes it. Every rule here is written down in
``docs/unit-contract.md``; this module is the unit's side of that contract.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

Config = dict[str, str]

PARENT, CHILD, AP = "parent", "child", "ap"
ROLES = (PARENT, CHILD, AP)
ROLE_NAMES = {PARENT: "parent", CHILD: "child", AP: "access point"}

WLANS = ("business", "guest")
TUNNEL_TYPES = ("ds-lite", "map-e", "ipip")


class InvalidValue(ValueError):
    """A value the contract rejects; the message names the path, the value and the rule."""


def _one_of(*choices: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if value not in choices:
            raise InvalidValue(f'"{value}" is not one of: {", ".join(choices)}')
        return value

    return check


def _ssid(value: str) -> str:
    size = len(value.encode("utf-8"))
    if not 1 <= size <= 32:
        raise InvalidValue(f'"{value}" is {size} bytes; an SSID is 1 to 32 bytes (UTF-8)')
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise InvalidValue(f'"{value}" has a control character; an SSID has none')
    return value


_HEX64 = re.compile(r"[0-9A-Fa-f]{64}")


def _passphrase(value: str) -> str:
    # The value itself is never echoed: it is a secret.
    if _HEX64.fullmatch(value):
        return value
    if not all(0x20 <= ord(c) <= 0x7E for c in value):
        raise InvalidValue(
            "the passphrase has a character outside printable ASCII; "
            "a passphrase is 8 to 63 printable ASCII characters or 64 hex digits"
        )
    if not 8 <= len(value) <= 63:
        raise InvalidValue(
            f"the passphrase is {len(value)} characters; "
            "a passphrase is 8 to 63 printable ASCII characters or 64 hex digits"
        )
    return value


def _ipv6(value: str) -> str:
    if "%" in value:
        raise InvalidValue(f'"{value}" has a zone index; a unit takes a global IPv6 address')
    try:
        return str(ipaddress.IPv6Address(value))
    except ValueError:
        raise InvalidValue(f'"{value}" is not an IPv6 address') from None


def _ipv4(value: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise InvalidValue(f'"{value}" is not an IPv4 address') from None


def _ipv6_prefix(value: str) -> str:
    if "%" in value:
        raise InvalidValue(f'"{value}" has a zone index; a mapping rule takes a global prefix')
    try:
        return str(ipaddress.IPv6Network(value, strict=True))
    except ValueError:
        raise InvalidValue(f'"{value}" is not an IPv6 prefix (e.g. 2001:db8:100::/40)') from None


def _ipv4_prefix(value: str) -> str:
    try:
        return str(ipaddress.IPv4Network(value, strict=True))
    except ValueError:
        raise InvalidValue(f'"{value}" is not an IPv4 prefix (e.g. 192.0.2.0/24)') from None


_FQDN = re.compile(r"(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}")


def _aftr(value: str) -> str:
    if ":" in value:
        return _ipv6(value)
    if _FQDN.fullmatch(value):
        return value.lower()
    raise InvalidValue(f'"{value}" is neither an IPv6 address nor a host name')


def _ea_length(value: str) -> str:
    if not re.fullmatch(r"[0-9]{1,2}", value) or not 0 <= int(value) <= 48:
        raise InvalidValue(f'"{value}" is not a whole number from 0 to 48')
    return str(int(value))


def _account_name(value: str) -> str:
    if not 1 <= len(value) <= 64 or any(not 0x21 <= ord(c) <= 0x7E for c in value):
        raise InvalidValue(f'"{value}" is not 1 to 64 printable characters without spaces')
    return value


def _password(value: str) -> str:
    if not 1 <= len(value) <= 64 or any(not 0x20 <= ord(c) <= 0x7E for c in value):
        raise InvalidValue("the password is not 1 to 64 printable ASCII characters")
    return value


@dataclass(frozen=True)
class Setting:
    path: str
    check: Callable[[str], str]
    roles: tuple[str, ...]
    secret: bool = False


_WAN = (PARENT,)
_ALL = ROLES

SETTINGS: tuple[Setting, ...] = (
    Setting("wan mode", _one_of("pppoe", "ipoe"), _WAN),
    Setting("wan pppoe username", _account_name, _WAN),
    Setting("wan pppoe password", _password, _WAN, secret=True),
    Setting("wan tunnel type", _one_of(*TUNNEL_TYPES), _WAN),
    Setting("wan tunnel aftr", _aftr, _WAN),
    Setting("wan tunnel br", _ipv6, _WAN),
    Setting("wan tunnel rule-ipv6-prefix", _ipv6_prefix, _WAN),
    Setting("wan tunnel rule-ipv4-prefix", _ipv4_prefix, _WAN),
    Setting("wan tunnel ea-length", _ea_length, _WAN),
    Setting("wan tunnel local", _ipv6, _WAN),
    Setting("wan tunnel remote", _ipv6, _WAN),
    Setting("wan tunnel ipv4-address", _ipv4, _WAN),
    Setting("wlan business ssid", _ssid, _ALL),
    Setting("wlan business passphrase", _passphrase, _ALL, secret=True),
    Setting("wlan business state", _one_of("up", "down"), _ALL),
    Setting("wlan guest ssid", _ssid, _ALL),
    Setting("wlan guest passphrase", _passphrase, _ALL, secret=True),
    Setting("wlan guest state", _one_of("up", "down"), _ALL),
    Setting("account state", _one_of("active", "stopped"), _ALL),
)
BY_PATH: Mapping[str, Setting] = {s.path: s for s in SETTINGS}
ORDER = {s.path: i for i, s in enumerate(SETTINGS)}
SECRET_PATHS = frozenset(s.path for s in SETTINGS if s.secret)

# What each tunnel type needs before a commit is accepted.
TUNNEL_NEEDS: Mapping[str, tuple[str, ...]] = {
    "ds-lite": ("wan tunnel aftr",),
    "map-e": (
        "wan tunnel br",
        "wan tunnel rule-ipv6-prefix",
        "wan tunnel rule-ipv4-prefix",
        "wan tunnel ea-length",
    ),
    "ipip": ("wan tunnel local", "wan tunnel remote", "wan tunnel ipv4-address"),
}


def sorted_paths(config: Mapping[str, str]) -> list[str]:
    return sorted(config, key=lambda p: ORDER.get(p, len(ORDER)))


def commit_check(config: Mapping[str, str], role: str) -> list[str]:
    """Whole-configuration rules, checked at commit; an empty list means it may commit."""
    problems: list[str] = []
    if role != PARENT:
        return problems
    mode = config.get("wan mode")
    if mode == "pppoe":
        for need in ("wan pppoe username", "wan pppoe password"):
            if need not in config:
                problems.append(f"{need} is required when wan mode is pppoe")
    elif mode == "ipoe":
        kind = config.get("wan tunnel type")
        if kind is None:
            problems.append("wan tunnel type is required when wan mode is ipoe")
        else:
            for need in TUNNEL_NEEDS[kind]:
                if need not in config:
                    problems.append(f"{need} is required when wan tunnel type is {kind}")
    return problems


def tunnel_params(config: Mapping[str, str]) -> dict[str, str]:
    """The tunnel settings of a configuration, keyed without the ``wan tunnel`` prefix."""
    kind = config.get("wan tunnel type")
    if kind is None:
        return {}
    out = {"type": kind}
    for path in TUNNEL_NEEDS[kind]:
        if path in config:
            out[path.removeprefix("wan tunnel ")] = config[path]
    return out
