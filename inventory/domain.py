"""The vocabulary of the U-SPOT service: roles, contract items, statuses, lines, tunnels.

Plain data, no I/O: the models store these words, the rules check them, the imports parse
them. Every value is a lower-case `StrEnum` member, so it compares equal to its text.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class Role(StrEnum):
    PARENT = "parent"
    CHILD = "child"
    AP = "ap"


class ItemCode(StrEnum):
    PARENT = "9604076"
    CHILD = "9604072"
    AP = "9604073"
    LEGACY_PARENT_V6 = "9604070"
    LEGACY_PARENT_V4 = "9604074"
    ORIGINAL_SSID = "Z201000"


ITEM_NAMES: Final[dict[ItemCode, str]] = {
    ItemCode.PARENT: "U-SPOT_01 parent",
    ItemCode.CHILD: "child",
    ItemCode.AP: "access point",
    ItemCode.LEGACY_PARENT_V6: "legacy parent V6",
    ItemCode.LEGACY_PARENT_V4: "legacy parent V4",
    ItemCode.ORIGINAL_SSID: "Original SSID",
}

# The unit role each equipment item stands for; Original SSID is a subscription, not a unit.
ITEM_ROLES: Final[dict[ItemCode, Role]] = {
    ItemCode.PARENT: Role.PARENT,
    ItemCode.CHILD: Role.CHILD,
    ItemCode.AP: Role.AP,
    ItemCode.LEGACY_PARENT_V6: Role.PARENT,
    ItemCode.LEGACY_PARENT_V4: Role.PARENT,
}
LEGACY_ITEMS: Final = frozenset({ItemCode.LEGACY_PARENT_V6, ItemCode.LEGACY_PARENT_V4})


class ItemStatus(StrEnum):
    ORDERED = "ordered"  # ordered, not installed yet
    CONFIRMED = "confirmed"  # installed and running (billing)
    CANCELLED = "cancelled"  # キャンセル: called off before installation
    TERMINATED = "terminated"  # 解約 / 強制解約: a live contract ended


class LineType(StrEnum):
    FLETS_EAST = "flets-east"
    FLETS_WEST = "flets-west"
    HIKARI_NEXT = "hikari-next"
    USEN_HIKARI = "usen-hikari"


class OrderState(StrEnum):
    """The partner ISP's 4over6 order for the customer's line."""

    NONE = "none"
    REQUESTED = "requested"
    COMPLETE = "complete"
    NG = "ng"  # sent back; must be filed again from the start


class TunnelType(StrEnum):
    DS_LITE = "ds-lite"
    MAP_E = "map-e"
    IPIP = "ipip"


# The parameters each tunnel type needs, named as in docs/unit-contract.md section 4.1
# (the `wan tunnel` path without its prefix).
TUNNEL_PARAMS: Final[dict[TunnelType, tuple[str, ...]]] = {
    TunnelType.DS_LITE: ("aftr",),
    TunnelType.MAP_E: ("br", "rule-ipv6-prefix", "rule-ipv4-prefix", "ea-length"),
    TunnelType.IPIP: ("local", "remote", "ipv4-address"),
}
ALL_TUNNEL_PARAMS: Final = tuple(p for params in TUNNEL_PARAMS.values() for p in params)


class WanMode(StrEnum):
    PPPOE = "pppoe"  # V4
    IPOE = "ipoe"  # V6 (4over6)


class AccountState(StrEnum):
    ACTIVE = "active"
    STOPPED = "stopped"


class AddressKind(StrEnum):
    """The three addresses a registration notice may be posted to."""

    INSTALLATION = "installation"
    CONTRACT_HOLDER = "contract_holder"
    BILLING = "billing"


DEFAULT_PLATFORM: Final = "uspot"
