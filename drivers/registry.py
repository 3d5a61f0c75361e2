"""Drivers and transports by name, through the ``fleetd.drivers`` entry-point group.

One group, two kinds of names:

* ``<platform>`` (e.g. ``uspot``): a driver factory,
  ``factory(target: UnitTarget, transport_factory: TransportFactory) -> UnitDriver``.
  The target's ``platform`` picks it.
* ``transport.<name>`` (e.g. ``transport.asyncssh``): a transport class (or factory),
  ``transport(target: UnitTarget, profile: CliProfile) -> Transport``.

A vendor's package adds its own names to the group in its ``pyproject.toml``::

    [project.entry-points."fleetd.drivers"]
    acme = "acme_fleet.driver:create"          # a platform, over our SSH transports or not
    "transport.acme-netconf" = "acme_fleet.netconf:NetconfTransport"

and ``load_driver(target)`` finds it without any change here. The built-ins are registered
the same way, in fleetd's own ``pyproject.toml``.
"""

from __future__ import annotations

import functools
from importlib.metadata import entry_points
from typing import Any, Protocol

from drivers.base import UnitDriver, UnitTarget
from drivers.transport import TransportFactory
from inventory.errors import NotFound

GROUP = "fleetd.drivers"
TRANSPORT_PREFIX = "transport."
DEFAULT_TRANSPORT = "asyncssh"


class DriverFactory(Protocol):
    def __call__(self, target: UnitTarget, transport_factory: TransportFactory) -> UnitDriver: ...


@functools.cache
def _registered() -> dict[str, Any]:
    # Entry points are read once per process; loading one imports only its module.
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def available() -> tuple[list[str], list[str]]:
    """(platforms, transports) registered in the group, sorted."""
    names = sorted(_registered())
    platforms = [n for n in names if not n.startswith(TRANSPORT_PREFIX)]
    transports = [n.removeprefix(TRANSPORT_PREFIX) for n in names if n.startswith(TRANSPORT_PREFIX)]
    return platforms, transports


@functools.cache
def _load(name: str, kind: str) -> Any:
    # loaded once per name: every operation asks for its driver and transport
    entry = _registered().get(name)
    if entry is None:
        platforms, transports = available()
        known = platforms if kind == "platform" else transports
        raise NotFound(
            kind, f"{name.removeprefix(TRANSPORT_PREFIX)!r} (registered: {', '.join(known)})"
        )
    return entry.load()


def load_transport(name: str = DEFAULT_TRANSPORT) -> TransportFactory:
    factory: TransportFactory = _load(TRANSPORT_PREFIX + name, "transport")
    return factory


def load_driver(target: UnitTarget, transport: str = DEFAULT_TRANSPORT) -> UnitDriver:
    """A driver for `target`: its platform's factory over the named transport.

    Not connected yet: ``async with driver: ...`` opens the session.
    """
    factory: DriverFactory = _load(target.platform, "platform")
    return factory(target, load_transport(transport))
