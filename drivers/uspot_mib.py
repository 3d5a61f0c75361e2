"""The U-SPOT_01 MIB as the poller reads it: which objects, and what their values mean. No I/O.

docs/unit-mib.md, sections 3 and 5. `STATE_OBJECTS` is one GET (about 600 octets answered,
under 800 with every value at its largest: well inside the unit's 1472-octet limit), and
`state_from_values` turns its values, in the same order, into a `UnitState`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from drivers.base import UnitState, WanState, WlanState
from drivers.snmp_codec import Oid, Value

USPOT_MIB: Oid = (1, 3, 6, 1, 4, 1, 55555, 1)
SYS_UPTIME: Oid = (1, 3, 6, 1, 2, 1, 1, 3, 0)


def uspot(*sub: int) -> Oid:
    return (*USPOT_MIB, *sub, 0)


# The objects one state reading asks for, by MIB name (docs/unit-mib.md, section 5).
STATE_OBJECTS: dict[str, Oid] = {
    "sysUpTime": SYS_UPTIME,
    "uspotSerial": uspot(1, 1),
    "uspotRole": uspot(1, 2),
    "uspotParentSerial": uspot(1, 3),
    "uspotFirmware": uspot(1, 4),
    "uspotLinkItem": uspot(1, 5),
    "uspotWanMode": uspot(2, 1),
    "uspotTunnelType": uspot(2, 2),
    "uspotTunnelState": uspot(2, 3),
    "uspotWanIpv4Address": uspot(2, 4),
    "uspotWanIpv6Address": uspot(2, 5),
    "uspotInternet": uspot(2, 6),
    "uspotTunnelReason": uspot(2, 7),
    "uspotLampPower": uspot(3, 1),
    "uspotLampWan": uspot(3, 2),
    "uspotLampU": uspot(3, 3),
    "uspotAccountState": uspot(4, 1),
    "uspotBusinessSsid": uspot(5, 1),
    "uspotBusinessWlanState": uspot(5, 2),
    "uspotBusinessPassphraseFingerprint": uspot(5, 3),
    "uspotGuestSsid": uspot(5, 4),
    "uspotGuestWlanState": uspot(5, 5),
    "uspotGuestPassphraseFingerprint": uspot(5, 6),
    "uspotCommitPending": uspot(6, 1),
    "uspotCommitCount": uspot(6, 2),
}
GUEST_SSID: Oid = STATE_OBJECTS["uspotGuestSsid"]

# Their syntax (BER tags: INTEGER 0x02, DisplayString 0x04, Counter32 0x41, TimeTicks 0x43),
# in the same order: the shape of a normal answer (`drivers.snmp_codec.AnswerShape`).
_TEXT = ("uspotSerial", "uspotParentSerial", "uspotFirmware", "uspotWanIpv4Address",
         "uspotWanIpv6Address", "uspotTunnelReason", "uspotBusinessSsid",
         "uspotBusinessPassphraseFingerprint", "uspotGuestSsid",
         "uspotGuestPassphraseFingerprint")  # fmt: skip
_SYNTAX = {"sysUpTime": 0x43, "uspotCommitCount": 0x41} | dict.fromkeys(_TEXT, 0x04)
STATE_TAGS: tuple[int, ...] = tuple(_SYNTAX.get(name, 0x02) for name in STATE_OBJECTS)

# keyed by any value read: a missing or non-INTEGER one is simply not found
ROLES: dict[Value, str] = {1: "parent", 2: "child", 3: "ap"}
WAN_MODES: dict[Value, str] = {1: "pppoe", 2: "ipoe"}
TUNNELS: dict[Value, str] = {1: "ds-lite", 2: "map-e", 3: "ipip"}
UP_DOWN: dict[Value, str] = {1: "up", 2: "down"}  # notApplicable(3): None
LAMPS: dict[Value, str] = {1: "on", 2: "off", 3: "blink"}
TRUE = 1  # TruthValue


def _text(value: Value) -> str | None:
    if isinstance(value, bytes) and value:
        return value.decode("utf-8", "replace")
    return None


def _number(value: Value) -> int:
    return value if isinstance(value, int) else 0


def _wlan(ssid: Value, state: Value, fingerprint: Value) -> WlanState:
    return WlanState(_text(ssid), UP_DOWN.get(state, "down"), _text(fingerprint))


def state_from_values(values: Sequence[Value], read_at: datetime) -> UnitState:
    """A `UnitState` from the values of `STATE_OBJECTS`, in its order (docs/unit-mib.md)."""
    (
        uptime, serial, role_number, parent, firmware, link_item,
        wan_mode, tunnel_type, tunnel_state, ipv4, ipv6, internet, tunnel_reason,
        lamp_power, lamp_wan, lamp_u, account,
        business_ssid, business_state, business_fingerprint,
        guest_ssid, guest_state, guest_fingerprint,
        commit_pending, commit_count,
    ) = values  # fmt: skip
    # Positional arguments, in the classes' field order: a sweep builds ten thousand of
    # these, and keywords cost a frozen dataclass about twice as much.
    role = ROLES.get(role_number, "unknown")
    wan = None
    if role == "parent":
        wan = WanState(
            WAN_MODES.get(wan_mode, "none"),
            TUNNELS.get(tunnel_type),
            UP_DOWN.get(tunnel_state),
            _text(tunnel_reason),
            _text(ipv4),
            _text(ipv6),
        )
    return UnitState(
        _text(serial) or "",  # serial
        role,
        _text(firmware) or "",  # firmware
        "active" if account == 1 else "stopped",  # account
        (internet == 1) if wan is not None else None,  # internet
        wan,
        {
            "POWER": LAMPS.get(lamp_power, "off"),
            "WAN": LAMPS.get(lamp_wan, "off"),
            "U": LAMPS.get(lamp_u, "off"),
        },
        _wlan(business_ssid, business_state, business_fingerprint),
        _wlan(guest_ssid, guest_state, guest_fingerprint),
        commit_pending == TRUE,  # commit_pending
        None,  # rollback_in
        _number(commit_count),  # commits
        None,  # running
        read_at,
        _text(parent),  # parent
        link_item == TRUE,  # link_item
        _number(uptime) // 100,  # uptime
        "snmp",  # source
    )
