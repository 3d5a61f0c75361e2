"""Each transport's one mapping from its library's exceptions to the error tree.

The scrapli messages and the netmiko exception chains are the ones those libraries raised
against the simulator (refused, silent, refused login, changed key, dropped, slow units).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools

import asyncssh
import paramiko  # type: ignore[import-untyped]
import pytest
from netmiko.exceptions import (
    NetmikoAuthenticationException,
    NetmikoTimeoutException,
    ReadTimeout,
)
from scrapli.exceptions import OperationException

from drivers.ssh_asyncssh import asyncssh_errors
from drivers.ssh_netmiko import ChannelClosed, netmiko_errors
from drivers.ssh_scrapli import scrapli_errors
from inventory.errors import (
    AuthFailed,
    HostKeyMismatch,
    Timeout,
    UnitError,
    Unreachable,
)

SERIAL = "US01SP000000"


def chain(*exceptions: BaseException) -> BaseException:
    """The first exception, raised while handling the second, and so on."""
    for outer, inner in itertools.pairwise(exceptions):
        outer.__context__ = inner
    return exceptions[0]


def mapped(errors: contextlib.AbstractContextManager[None], exc: BaseException) -> UnitError:
    with pytest.raises(UnitError) as caught, errors:
        raise exc
    assert caught.value.__cause__ is exc  # raise … from the library's exception
    assert caught.value.serial == SERIAL
    return caught.value


# ----- scrapli ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("message", "opening", "kind"),
    [
        ("Transport: ssh2.Transport initSession: failed session handshake", True, Unreachable),
        ("TimeoutExceeded: ssh2.Transport initSession: operation timeout exceeded", True, Timeout),
        ("Transport: ", True, AuthFailed),  # libscrapli's refused login: no detail at all
        ("Transport: ", False, Unreachable),
        (
            "Transport: ssh2.Transport initKnownHost: known host check mismatch",
            True,
            HostKeyMismatch,
        ),
        ("TimeoutExceeded: session.Session readTimeout: operation timeout exceeded", True, Timeout),
        (
            "TimeoutExceeded: session.Session readTimeout: operation timeout exceeded",
            False,
            Timeout,
        ),
        ("Transport: ssh2.Transport readStandard: transport read failed", True, Unreachable),
        ("Transport: ssh2.Transport readStandard: transport read failed", False, Unreachable),
    ],
)
def test_scrapli(message: str, opening: bool, kind: type[UnitError]) -> None:
    error = mapped(scrapli_errors(SERIAL, "test", opening=opening), OperationException(message))
    assert type(error) is kind


def test_scrapli_never_calls_a_timeout_a_refused_login() -> None:
    for message in ("TimeoutExceeded: ", "Transport: operation timeout exceeded", "auth timeout"):
        error = mapped(scrapli_errors(SERIAL, "test", opening=True), OperationException(message))
        assert isinstance(error, Timeout)


# ----- netmiko ------------------------------------------------------------------------------
class _Key:
    def get_base64(self) -> str:
        return "AAAA"


BANNER = "Error reading SSH protocol banner"
NETMIKO_CASES = [
    (
        chain(NetmikoTimeoutException(BANNER), paramiko.SSHException(BANNER), TimeoutError()),
        Timeout,
    ),
    (
        chain(
            NetmikoTimeoutException(BANNER), paramiko.SSHException(BANNER), ConnectionResetError()
        ),
        Unreachable,
    ),
    (EOFError(), Unreachable),
    (
        chain(
            NetmikoAuthenticationException("Authentication to device failed."),
            paramiko.AuthenticationException("Authentication failed."),
        ),
        AuthFailed,
    ),
    (
        chain(
            NetmikoAuthenticationException("Authentication to device failed."),
            paramiko.AuthenticationException("Authentication timeout."),
        ),
        Timeout,
    ),
    (
        chain(
            NetmikoTimeoutException("A paramiko SSHException occurred"),
            paramiko.BadHostKeyException("127.0.0.1", _Key(), _Key()),
        ),
        HostKeyMismatch,
    ),
    (NetmikoTimeoutException("Paramiko: 'No existing session' error: try increasing"), Timeout),
    (ReadTimeout("Pattern not detected"), Timeout),
    (chain(ChannelClosed("the unit closed the session"), ReadTimeout("Pattern")), Unreachable),
    (ConnectionRefusedError(111, "refused"), Unreachable),
]


@pytest.mark.parametrize(("exc", "kind"), NETMIKO_CASES)
def test_netmiko(exc: BaseException, kind: type[UnitError]) -> None:
    assert type(mapped(netmiko_errors(SERIAL, "test"), exc)) is kind


# ----- asyncssh -----------------------------------------------------------------------------
ASYNCSSH_CASES = [
    (asyncssh.HostKeyNotVerifiable("Host key is not trusted"), HostKeyMismatch),
    (asyncssh.PermissionDenied("Permission denied"), AuthFailed),
    (TimeoutError(), Timeout),
    (asyncssh.ConnectionLost("Connection lost"), Unreachable),
    (ConnectionResetError(104, "Connection reset by peer"), Unreachable),
    (asyncio.IncompleteReadError(b"", None), Unreachable),
    (asyncssh.ChannelOpenError(2, "refused"), Unreachable),
]


@pytest.mark.parametrize(("exc", "kind"), ASYNCSSH_CASES)
def test_asyncssh(exc: BaseException, kind: type[UnitError]) -> None:
    assert type(mapped(asyncssh_errors(SERIAL, "test"), exc)) is kind


def test_other_exceptions_are_bugs_and_pass_through() -> None:
    with pytest.raises(KeyError), asyncssh_errors(SERIAL, "test"):
        raise KeyError("x")
