"""SNMP status polling: many units over one UDP socket, results as data.

`SnmpPoller` owns one non-blocking UDP socket (with a large receive buffer) for every unit
it talks to. Requests go out through a bounded window (at most ``window`` unanswered at
once, so a sweep never floods its own receive buffer or the network), each with its own
timeout and retries; a retry reuses the request-id, so a late answer to the first try still
counts. Every unit of a sweep ends with a `UnitState` or a `UnitError` (`Timeout` when
nothing came back after the retries): one bad unit never stops the others, and nothing is
lost silently.

The hot path does no per-unit task or coroutine: requests are rendered from a template
encoded once by pysnmp (`drivers.snmp_codec`), answers are matched by request-id and
source address in a reader callback, and one timer serves every deadline.

A single read (`read_state`) or write (`set_guest_ssid`) goes ahead of a running sweep's
queue. SNMP readings carry no running configuration (``UnitState.running`` is None).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import itertools
import secrets
import socket
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Self

from drivers.base import UnitState, UnitTarget
from drivers.snmp_codec import (
    ERROR_STATUS,
    NO_ACCESS,
    REQUEST_ID_MAX,
    REQUEST_ID_MIN,
    TOO_BIG,
    AnswerShape,
    Malformed,
    RequestTemplate,
    Response,
    get_template,
    parse_response,
    set_octets_template,
)
from drivers.uspot_mib import GUEST_SSID, STATE_OBJECTS, STATE_TAGS, state_from_values
from inventory.errors import AuthFailed, CommandFailed, Timeout, UnitError, Unreachable

DRAIN_LIMIT = 2048  # datagrams per readiness callback, so the loop stays responsive
RECEIVE_SIZE = 65535
TIMER_RESOLUTION = 0.01  # seconds: deadlines this close together share one wake-up
# While a sweep keeps many requests in flight, answers are left to gather in the socket's
# receive buffer for this long between reads: the loop then wakes once per batch instead of
# once per datagram, which costs more CPU than decoding the answer (measured: ~160 µs per
# unit at one wake-up per answer, ~110 µs with a 5 ms linger). Single reads are never held back.
LINGER = 0.005
LINGER_MIN_IN_FLIGHT = 16

Outcome = Response | UnitError


def _utc_now() -> datetime:
    return datetime.now(UTC)


@functools.cache
def _state_request(community: str) -> tuple[RequestTemplate, AnswerShape]:
    """The state GET and the shape of its normal answer: built once per community (the
    shape's expression takes a few dozen milliseconds to compile)."""
    template = get_template(community, list(STATE_OBJECTS.values()))
    return template, AnswerShape(template, STATE_TAGS)


@dataclass
class SnmpStats:
    sent: int = 0  # datagrams, retries included
    answers: int = 0
    retries: int = 0
    timeouts: int = 0  # requests that ended without an answer
    unmatched: int = 0  # late duplicates, strangers, wrong community
    malformed: int = 0
    max_in_flight: int = 0
    receive_buffer: int = 0  # bytes the kernel granted


@dataclass
class SweepResult:
    """Per unit: a state, or the error that stopped it. Every target is in one of the two
    (but for the states a sweep handed to its `each` instead)."""

    states: dict[str, UnitState] = field(default_factory=dict)
    errors: dict[str, UnitError] = field(default_factory=dict)
    elapsed: float = 0.0

    def __len__(self) -> int:
        return len(self.states) + len(self.errors)

    @property
    def failed(self) -> list[str]:
        return sorted(self.errors)


class _Request:
    __slots__ = ("attempt", "destination", "done", "on_done", "request_id", "serial", "sink",
                 "target", "template", "timeout", "tries_left")  # fmt: skip

    def __init__(
        self,
        serial: str,
        destination: tuple[str, int],
        template: RequestTemplate,
        timeout: float,
        retries: int,
        on_done: Callable[[_Request, Outcome], None],
    ) -> None:
        self.serial = serial
        self.destination = destination
        self.template = template
        self.timeout = timeout
        self.tries_left = retries
        self.on_done = on_done
        self.request_id = 0
        self.attempt = 0
        self.done = False
        # a state read: the unit, and who gets its state (see SnmpPoller._state_answered)
        self.target: UnitTarget | None = None
        self.sink: Callable[[str, UnitState | UnitError], None] | None = None


class SnmpPoller:
    """SNMPv2c reads (and the guest-SSID write) for any number of units, on one socket.

    ``async with SnmpPoller(read_community="public") as snmp: result = await snmp.sweep(targets)``
    """

    def __init__(
        self,
        *,
        read_community: str = "public",
        write_community: str | None = None,
        timeout: float = 1.0,
        retries: int = 1,
        window: int = 256,
        bind: tuple[str, int] = ("0.0.0.0", 0),  # noqa: S104 - units live on any network
        receive_buffer: int = 8 << 20,
        linger: float = LINGER,
        now: Callable[[], datetime] = _utc_now,
    ) -> None:
        if window < 1 or retries < 0 or timeout <= 0:
            raise ValueError("window >= 1, retries >= 0 and timeout > 0")
        self.read_community = read_community
        self.write_community = write_community
        self.timeout = timeout
        self.retries = retries
        self.window = window
        self._bind = bind
        self._receive_buffer = receive_buffer
        self._linger = linger
        self._lingering: asyncio.TimerHandle | None = None
        self._now = now
        oids = list(STATE_OBJECTS.values())
        self._state, self._shape = _state_request(read_community)
        self._read_at: datetime | None = None  # while answers are being read: when
        half = len(oids) // 2  # for a unit that answers tooBig (it should not: ~800 octets)
        self._halves = (
            get_template(read_community, oids[:half]),
            get_template(read_community, oids[half:]),
        )
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: dict[int, _Request] = {}
        self._waiting: deque[_Request] = deque()
        # (deadline, sequence, request-id, attempt): ids, not requests, so that an answered
        # request is freed at once instead of living on in the heap until its deadline
        self._timers: list[tuple[float, int, int, int]] = []
        self._state_answered_ = self._state_answered  # one bound method for every request
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._sequence = itertools.count()
        self._next_id = REQUEST_ID_MIN + secrets.randbelow(REQUEST_ID_MAX - REQUEST_ID_MIN)
        self._blocked = False
        self.stats = SnmpStats()

    # ----- life cycle --------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def open(self) -> None:
        if self._sock is not None:
            raise RuntimeError("the poller is already open")
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            # SO_RCVBUFFORCE passes rmem_max when the daemon may (CAP_NET_ADMIN).
            for option in (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF):
                if option is not None:
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.SOL_SOCKET, option, self._receive_buffer)
                        break
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
            sock.bind(self._bind)
            loop.add_reader(sock.fileno(), self._on_readable)
        except BaseException:
            sock.close()
            raise
        self.stats.receive_buffer = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        self._sock, self._loop = sock, loop

    def close(self) -> None:
        sock, loop = self._sock, self._loop
        self._sock = self._loop = None
        for handle in (self._timer, self._lingering):
            if handle is not None:
                handle.cancel()
        self._timer = self._lingering = None
        if sock is not None and loop is not None:
            if not loop.is_closed():
                loop.remove_reader(sock.fileno())
                if self._blocked:
                    loop.remove_writer(sock.fileno())
            sock.close()
        stranded = [*self._pending.values(), *self._waiting]
        self._pending.clear()
        self._waiting.clear()
        self._timers.clear()
        for request in stranded:
            self._finish(request, Unreachable(request.serial, "the SNMP poller was closed"))

    # ----- reading -----------------------------------------------------------------------
    async def sweep(
        self,
        targets: Iterable[UnitTarget],
        *,
        each: Callable[[str, UnitState | UnitError], None] | None = None,
    ) -> SweepResult:
        """Read every target; the result holds a state or an error for each one.

        `each(serial, outcome)`, when given, is called as soon as a unit ends instead, so a
        caller can record the first units while the last are still being read, and a sweep
        of many units never holds every reading at once: the result then keeps the errors
        only. An exception `each` raises ends the sweep with that exception."""
        loop = self._require_loop()
        result = SweepResult()
        started = loop.time()
        finished: asyncio.Future[None] = loop.create_future()
        count = 1  # the loop below is itself outstanding until it has submitted everything

        def done(serial: str, outcome: UnitState | UnitError) -> None:
            nonlocal count
            if isinstance(outcome, UnitError):
                result.errors[serial] = outcome
            elif each is None:
                result.states[serial] = outcome
            if each is not None:
                try:
                    each(serial, outcome)
                except Exception as exc:  # handed to the sweep's caller
                    if not finished.done():
                        finished.set_exception(exc)
            count -= 1
            if count == 0 and not finished.done():
                finished.set_result(None)

        for target in targets:
            count += 1
            self._read(target, done, urgent=False)
        self._pump()
        count -= 1
        if count == 0 and not finished.done():
            finished.set_result(None)
        await finished
        result.elapsed = loop.time() - started
        return result

    async def read_state(self, target: UnitTarget) -> UnitState:
        """One unit's state; raises the `UnitError` a sweep would have recorded."""
        future: asyncio.Future[UnitState | UnitError] = self._require_loop().create_future()

        def done(serial: str, outcome: UnitState | UnitError) -> None:
            if not future.done():
                future.set_result(outcome)

        self._read(target, done, urgent=True)
        self._pump()
        outcome = await future
        if isinstance(outcome, UnitError):
            raise outcome
        return outcome

    def _read(
        self,
        target: UnitTarget,
        done: Callable[[str, UnitState | UnitError], None],
        *,
        urgent: bool,
    ) -> None:
        self._submit(target, self._state, self._state_answered_, urgent=urgent, sink=done)

    def _state_answered(self, request: _Request, outcome: Outcome) -> None:
        done, target, serial = request.sink, request.target, request.serial
        assert done is not None and target is not None
        if isinstance(outcome, UnitError):
            done(serial, outcome)
        elif outcome.error_status == TOO_BIG and request.template is self._state:
            self._read_in_halves(target, done)
        else:
            done(serial, self._interpret(serial, request.template, outcome))

    def _read_in_halves(
        self, target: UnitTarget, done: Callable[[str, UnitState | UnitError], None]
    ) -> None:
        parts: list[Response | UnitError | None] = [None, None]

        def answered(index: int) -> Callable[[_Request, Outcome], None]:
            def handler(request: _Request, outcome: Outcome) -> None:
                parts[index] = outcome
                if any(p is None for p in parts):
                    return
                errors = [p for p in parts if isinstance(p, UnitError)]
                if errors:
                    done(target.serial, errors[0])
                    return
                first, second = (p for p in parts if isinstance(p, Response))
                merged = first._replace(
                    error_status=max(first.error_status, second.error_status),
                    names=first.names + second.names,
                    values=first.values + second.values,
                )
                done(target.serial, self._interpret(target.serial, self._state, merged))

            return handler

        for index, half in enumerate(self._halves):
            self._submit(target, half, answered(index), urgent=True)
        self._pump()

    def _interpret(
        self, serial: str, template: RequestTemplate, response: Response
    ) -> UnitState | UnitError:
        if response.error_status:
            status = ERROR_STATUS.get(response.error_status, str(response.error_status))
            return CommandFailed(serial, "SNMP GET", f"{status} (index {response.error_index})")
        if response.names != self._state.names:  # one C-level comparison of 25 OIDs
            return CommandFailed(serial, "SNMP GET", "the answer names other objects")
        return state_from_values(response.values, self._read_at or self._now())

    # ----- writing -----------------------------------------------------------------------
    async def set_guest_ssid(self, target: UnitTarget, ssid: str) -> None:
        """SET uspotGuestSsid with the write community: applied at once, no confirm timer."""
        if self.write_community is None:
            raise ValueError("the poller has no write community")
        template = set_octets_template(self.write_community, GUEST_SSID, ssid.encode("utf-8"))
        loop = self._require_loop()
        future: asyncio.Future[Outcome] = loop.create_future()

        def answered(request: _Request, outcome: Outcome) -> None:
            if not future.done():
                future.set_result(outcome)

        self._submit(target, template, answered, urgent=True)
        self._pump()
        outcome = await future
        if isinstance(outcome, UnitError):
            raise outcome
        status = outcome.error_status
        if status == NO_ACCESS:
            raise AuthFailed(target.serial, "SNMP SET refused: the write community is read-only")
        if status:
            name = ERROR_STATUS.get(status, str(status))
            raise CommandFailed(target.serial, "SNMP SET wlan guest ssid", f"{name} ({status})")

    # ----- the engine --------------------------------------------------------------------
    def _require_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("the poller is not open: use `async with SnmpPoller(...)`")
        return self._loop

    def _submit(
        self,
        target: UnitTarget,
        template: RequestTemplate,
        on_done: Callable[[_Request, Outcome], None],
        *,
        urgent: bool,
        sink: Callable[[str, UnitState | UnitError], None] | None = None,
    ) -> None:
        try:
            socket.inet_pton(socket.AF_INET, target.address)  # cheaper than ipaddress
        except (OSError, ValueError):
            error = Unreachable(target.serial, f"SNMP needs an IP address, not {target.address!r}")
            refused = _Request(target.serial, ("", 0), template, 0, 0, on_done)
            refused.target, refused.sink = target, sink
            on_done(refused, error)
            return
        request = _Request(
            target.serial,
            (target.address, target.snmp_port),
            template,
            self.timeout,
            self.retries,
            on_done,
        )
        request.target, request.sink = target, sink
        if urgent:
            self._waiting.appendleft(request)
        else:
            self._waiting.append(request)

    def _pump(self) -> None:
        """Send waiting requests while the window has room."""
        waiting, pending = self._waiting, self._pending
        while waiting and len(pending) < self.window and not self._blocked:
            request = waiting.popleft()
            self._next_id += 1
            if self._next_id > REQUEST_ID_MAX:
                self._next_id = REQUEST_ID_MIN
            request.request_id = self._next_id
            pending[request.request_id] = request
            if not self._transmit(request):
                break
        if len(pending) > self.stats.max_in_flight:
            self.stats.max_in_flight = len(pending)

    def _transmit(self, request: _Request) -> bool:
        """Send (or resend) one request; False when the socket's send buffer is full."""
        sock, loop = self._sock, self._loop
        if sock is None or loop is None:
            return False
        try:
            sock.sendto(request.template.render(request.request_id), request.destination)
        except BlockingIOError:
            # Try again when the socket can take it; a retry waits its turn in front.
            del self._pending[request.request_id]
            self._waiting.appendleft(request)
            self._blocked = True
            loop.add_writer(sock.fileno(), self._on_writable)
            return False
        except OSError as exc:  # no route, network down: this unit only
            self._pending.pop(request.request_id, None)
            self._finish(request, Unreachable(request.serial, f"SNMP send failed: {exc}"))
            return True
        self.stats.sent += 1
        deadline = loop.time() + request.timeout
        heapq.heappush(
            self._timers, (deadline, next(self._sequence), request.request_id, request.attempt)
        )
        if self._timer is None or deadline < self._timer_at - TIMER_RESOLUTION:
            self._arm(deadline)
        return True

    def _on_writable(self) -> None:
        if self._sock is not None and self._loop is not None:
            self._loop.remove_writer(self._sock.fileno())
        self._blocked = False
        self._pump()

    def _arm(self, when: float) -> None:
        assert self._loop is not None
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = max(when, self._loop.time() + TIMER_RESOLUTION)
        self._timer = self._loop.call_at(self._timer_at, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self._loop is None:
            return
        now = self._loop.time()
        timers, pending = self._timers, self._pending
        while timers and timers[0][0] <= now:
            _, _, request_id, attempt = heapq.heappop(timers)
            request = pending.get(request_id)  # None: answered (or sent again under a new id)
            if request is None or request.done or attempt != request.attempt:
                continue
            if request.tries_left > 0:
                request.tries_left -= 1
                request.attempt += 1
                self.stats.retries += 1
                self._transmit(request)
                continue
            self._pending.pop(request.request_id, None)
            self.stats.timeouts += 1
            tries = request.attempt + 1
            self._finish(
                request,
                Timeout(request.serial, f"no SNMP answer in {request.timeout:g} s ({tries} tries)"),
            )
        if timers:
            self._arm(timers[0][0])
        self._pump()

    def _finish(self, request: _Request, outcome: Outcome) -> None:
        if request.done:
            return
        request.done = True
        request.on_done(request, outcome)

    def _on_readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        # one clock read for the answers drained together (they came within a few ms)
        self._read_at = self._now()
        try:
            self._drain(sock)
        finally:
            self._read_at = None
        self._pump()
        pending = self._pending
        if self._linger > 0 and len(pending) >= LINGER_MIN_IN_FLIGHT and self._loop is not None:
            self._loop.remove_reader(sock.fileno())
            self._lingering = self._loop.call_later(self._linger, self._resume_reading)

    def _drain(self, sock: socket.socket) -> None:
        pending = self._pending
        shape = self._shape.parse
        for _ in range(DRAIN_LIMIT):
            try:
                data, peer = sock.recvfrom(RECEIVE_SIZE)
            except OSError:  # BlockingIOError: drained
                break
            response = shape(data)  # the usual answer, or None: the general reader decides
            if response is None:
                try:
                    response = parse_response(data)
                except Malformed:
                    self.stats.malformed += 1
                    continue
            request = pending.get(response.request_id)
            if (
                request is None
                or peer[:2] != request.destination
                or response.community != request.template.community
            ):
                self.stats.unmatched += 1
                continue
            del pending[response.request_id]
            self.stats.answers += 1
            self._finish(request, response)

    def _resume_reading(self) -> None:
        self._lingering = None
        if self._sock is not None and self._loop is not None:
            self._loop.add_reader(self._sock.fileno(), self._on_readable)
            self._on_readable()
