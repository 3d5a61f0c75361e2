"""A unit's reading as the inventory keeps it (`UnitObservation.read_values`).

One shape whatever read it (an SSH `read_state()` in a workflow, the SNMP status sweep), so
the V6 status, drift and the API read the same keys. Never a passphrase: Wi-Fi networks are
kept as SSID, state and the unit's own passphrase fingerprint.
"""

from __future__ import annotations

import functools
import json
import json.encoder
from datetime import datetime
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


_text = json.encoder.encode_basestring_ascii  # what json.dumps does with a str
_WORDS = {True: "true", False: "false", None: "null"}


def _json_text(value: str | None) -> str:
    return "null" if value is None else _text(value)


def _json_int(value: int) -> str:
    if type(value) is not int:
        raise TypeError(value)
    return int.__repr__(value)


@functools.lru_cache(maxsize=256)  # a few lamp combinations, and answers come in batches
def _lamps(lamps: tuple[tuple[str, str], ...]) -> str:
    return ", ".join([f"{_text(name)}: {_json_text(value)}" for name, value in lamps])


@functools.lru_cache(maxsize=16)
def _read_at(at: datetime) -> str:
    return str(_text(at.isoformat()))


def observation_json(state: UnitState) -> str:
    """``json.dumps(observation_values(state))``, the same text, without the dict between.

    The status sweep stores one per unit; this is its encoding done in one format
    instead of a dict built and walked by the JSON encoder. Anything of another type than
    `UnitState` declares is left to `json.dumps`."""
    wan = state.wan
    lamps = state.lamps
    business, guest = state.business, state.guest
    try:
        lamp_words = _lamps(tuple(lamps.items()))
        return _OBSERVATION % (
            _text(state.source),
            _read_at(state.read_at),
            _text(state.role),
            _text(state.firmware),
            _text(state.account),
            _WORDS[state.internet],
            _json_text(wan.mode) if wan else "null",
            _json_text(wan.tunnel) if wan else "null",
            _json_text(wan.tunnel_state) if wan else "null",
            _json_text(wan.tunnel_reason) if wan else "null",
            _json_text(wan.ipv4) if wan else "null",
            _json_text(wan.ipv6) if wan else "null",
            lamp_words,
            _json_text(lamps.get("U")),
            _json_text(business.ssid),
            _text(business.state),
            _json_text(business.passphrase_fingerprint),
            _json_text(guest.ssid),
            _text(guest.state),
            _json_text(guest.passphrase_fingerprint),
            _WORDS[state.commit_pending],
            _json_int(state.commits),
            _json_int(state.uptime),
        )
    except (TypeError, KeyError):
        return json.dumps(observation_values(state))


_OBSERVATION = (
    '{"source": %s, "read_at": %s, "role": %s, "firmware": %s, "account_state": %s, '
    '"internet": %s, "wan_mode": %s, "tunnel": %s, "tunnel_state": %s, "tunnel_reason": %s, '
    '"ipv4": %s, "ipv6": %s, "lamps": {%s}, "u_lamp": %s, "business_ssid": %s, '
    '"business_state": %s, "business_fingerprint": %s, "guest_ssid": %s, "guest_state": %s, '
    '"guest_fingerprint": %s, "commit_pending": %s, "commits": %s, "uptime": %s}'
)
