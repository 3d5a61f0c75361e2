"""A unit's reading as the inventory keeps it (`UnitObservation.read_values`).

One shape whatever read it (an SSH `read_state()` in a workflow, the SNMP status sweep), so
the V6 status, drift and the API read the same keys. Never a passphrase: Wi-Fi networks are
kept as SSID, state and the unit's own passphrase fingerprint.
"""

from __future__ import annotations

from typing import Any

from drivers.base import UnitState


def observation_values(state: UnitState) -> dict[str, Any]:
    wan = state.wan
    return {
        "source": state.source,
        "read_at": state.read_at.isoformat(),
        "role": state.role,
        "firmware": state.firmware,
        "account_state": state.account,
        "internet": state.internet,
        "wan_mode": wan.mode if wan else None,
        "tunnel": wan.tunnel if wan else None,
        "tunnel_state": wan.tunnel_state if wan else None,
        "tunnel_reason": wan.tunnel_reason if wan else None,
        "ipv4": wan.ipv4 if wan else None,
        "ipv6": wan.ipv6 if wan else None,
        "lamps": dict(state.lamps),
        "u_lamp": state.lamps.get("U"),
        "business_ssid": state.business.ssid,
        "business_state": state.business.state,
        "business_fingerprint": state.business.passphrase_fingerprint,
        "guest_ssid": state.guest.ssid,
        "guest_state": state.guest.state,
        "guest_fingerprint": state.guest.passphrase_fingerprint,
        "commit_pending": state.commit_pending,
        "commits": state.commits,
        "uptime": state.uptime,
    }
