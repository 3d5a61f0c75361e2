"""Drivers and transports come from the ``fleetd.drivers`` entry-point group."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest

from drivers import load_driver
from drivers.base import UnitDriver, UnitTarget
from drivers.registry import GROUP, available, load_transport
from drivers.ssh_asyncssh import AsyncsshTransport
from drivers.ssh_netmiko import NetmikoTransport
from drivers.ssh_scrapli import ScrapliTransport
from drivers.uspot_driver import UspotDriver
from inventory.errors import NotFound

TARGET = UnitTarget("US01SP000000", "127.0.0.1", password="pw")


def test_built_ins_are_registered_as_entry_points() -> None:
    names = {ep.name for ep in entry_points(group=GROUP)}
    assert {"uspot", "transport.asyncssh", "transport.scrapli", "transport.netmiko"} <= names
    platforms, transports = available()
    assert "uspot" in platforms
    assert {"asyncssh", "scrapli", "netmiko"} <= set(transports)


@pytest.mark.parametrize(
    ("name", "cls"),
    [("asyncssh", AsyncsshTransport), ("scrapli", ScrapliTransport), ("netmiko", NetmikoTransport)],
)
def test_load_driver_picks_the_platform_and_the_transport(name: str, cls: type) -> None:
    driver = load_driver(TARGET, name)
    assert isinstance(driver, UspotDriver)
    assert isinstance(driver, UnitDriver)  # the runtime-checkable protocol
    assert isinstance(driver.transport, cls)
    assert load_transport(name) is cls


def test_asyncssh_is_the_default() -> None:
    driver = load_driver(TARGET)
    assert isinstance(driver, UspotDriver)
    assert isinstance(driver.transport, AsyncsshTransport)


def test_unknown_names_say_what_is_there() -> None:
    with pytest.raises(NotFound, match=r"registered: .*uspot"):
        load_driver(UnitTarget("US01SP000000", "127.0.0.1", platform="acme"))
    with pytest.raises(NotFound, match=r"registered: .*asyncssh"):
        load_driver(TARGET, "telnet")
