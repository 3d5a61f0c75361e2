"""fleetctl's side of the wire: one HTTP client of the control API, and its errors in words.

    CtlError                one line for staff, and the exit status it ends with
    └── ApiError            the API answered an error: its status and its JSON body

Every failure of the connection, and every error the API answers, becomes a `CtlError`
here, in `ApiClient`, once: the commands only print its line. The token is sent as
`Authorization: Bearer …` and never appears in a message.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final

import httpx

DEFAULT_URL: Final = "http://127.0.0.1:8080"
USER_AGENT: Final = "fleetctl/1"

# exit statuses, as the module docstring of fleetd.ctl tells staff
EXIT_REFUSED: Final = 1
EXIT_USAGE: Final = 2
EXIT_UNAVAILABLE: Final = 3
EXIT_FORBIDDEN: Final = 4

CONNECT_SECONDS: Final = 5.0
READ_SECONDS: Final = 60.0
# the API sends a keep-alive comment every 15 s on a quiet progress stream
STREAM_READ_SECONDS: Final = 60.0

# the API's body fields that a fleetctl option sets: an error names the option to fix too
FIELD_OPTIONS: Final[Mapping[str, str]] = {
    "serial": "--serial",
    "confirm_minutes": "--confirm-minutes",
    "not_before": "--not-before",
    "deadline": "--deadline",
    "idempotency_key": "--idempotency-key",
    "ssid": "--ssid",
    "passphrase": "--ask-passphrase",
    "new_serial": "--new-serial",
    "address": "--address",
    "ssh_port": "--ssh-port",
    "snmp_port": "--snmp-port",
    "username": "--username",
    "password": "--password-file",
    "host_key": "--host-key",
    "platform": "--platform",
    "month": "--month",
    "canary": "--canary",
    "max_failure_rate": "--max-failure-rate",
    "max_parallel": "--max-parallel",
    "selection": "--customers/--serials/--filter",
    "selection.filter": "--filter",
    "selection.customers": "--customers",
    "selection.serials": "--serials",
    "requester.name": "--name",
    "requester.kind": "--requester",
    "destination.kind": "--to",
    "destination.address": "--address",
    "since": "--since",
    "limit": "--limit",
}


class CtlError(Exception):
    """What went wrong, in one line for staff; `code` is the exit status."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class ApiError(CtlError):
    """The API answered `status` with the error `body` (its JSON, {} when it sent none)."""

    def __init__(self, message: str, code: int, status: int, body: Mapping[str, Any]) -> None:
        super().__init__(message, code)
        self.status = status
        self.body = body


@dataclass(frozen=True)
class Config:
    """Where the API is and who calls it, from FLEETD_URL and FLEETD_TOKEN."""

    url: str
    token: str = field(repr=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        env = os.environ if environ is None else environ
        url = (env.get("FLEETD_URL") or DEFAULT_URL).strip().rstrip("/")
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL:
            parsed = None
        if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
            raise CtlError(
                f'FLEETD_URL "{_without_userinfo(url)}" is not an http(s) URL: set it to the '
                f"daemon's control API, e.g. {DEFAULT_URL}",
                EXIT_USAGE,
            )
        token = (env.get("FLEETD_TOKEN") or "").strip()
        if not token:
            raise CtlError(
                "FLEETD_TOKEN is not set: export your API token (an admin makes one with "
                "`fleetd users add NAME --role ROLE`)",
                EXIT_USAGE,
            )
        return cls(url, token)

    @property
    def shown_url(self) -> str:
        """The URL as it may be printed (no user name or password in it)."""
        return _without_userinfo(self.url)

    @property
    def host(self) -> str:
        return httpx.URL(self.url).host


def _without_userinfo(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, path = rest.partition("/")
    return f"{scheme}://{authority.rpartition('@')[2]}{slash}{path}"


def one_line(text: object) -> str:
    return " ".join(str(text).split())


def _value(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def describe_problem(body: Mapping[str, Any]) -> str:
    """A rule the API says was broken, in words: the field (and the option that sets it),
    the value, the rule, and what to do."""
    field_name = body.get("field")
    value = body.get("value")
    rule = body.get("rule") or body.get("message") or "is not valid"
    if not field_name:
        return one_line(rule)
    option = FIELD_OPTIONS.get(str(field_name))
    where = f"{field_name} ({option})" if option else str(field_name)
    shown = "" if value is None else f" {_value(value)}"
    text = f"{where}{shown}: {rule}"
    hint = body.get("hint")
    if hint:
        text += f"; {hint}"
    return one_line(text)


def error_for(status: int, body: Mapping[str, Any], reason: str, where: str) -> ApiError:
    """The CtlError for an error the API answered (`body` its JSON, or {})."""
    message = one_line(body.get("message") or reason or f"HTTP {status}")
    kind = body.get("error")
    if status == 401:
        text = f"not signed in: {message} (check FLEETD_TOKEN)"
        return ApiError(text, EXIT_FORBIDDEN, status, body)
    if status == 403:
        # the API says who may; the other way is to be given the role
        text = f"not allowed: {message} (or ask an admin for the role if your work needs it)"
        return ApiError(text, EXIT_FORBIDDEN, status, body)
    if status == 422 and kind in ("rule_violation", "invalid_request"):
        text = f"refused: {describe_problem(body)}"
        problems = body.get("problems") or []
        if len(problems) > 1:
            others = "; ".join(describe_problem(p) for p in problems[1:])
            text += f" (also {others})"
        return ApiError(text, EXIT_REFUSED, status, body)
    if status == 404 and kind == "not_found" and message == "Not Found":
        text = f"the API at {where} does not know this request: is FLEETD_URL a fleetd daemon?"
        return ApiError(text, EXIT_UNAVAILABLE, status, body)
    if status in (404, 409, 422) or kind == "unit_error":
        return ApiError(message, EXIT_REFUSED, status, body)
    if status >= 500:
        text = f"the daemon at {where} could not do it: {message}"
        return ApiError(text, EXIT_UNAVAILABLE, status, body)
    return ApiError(f"HTTP {status}: {message}", EXIT_REFUSED, status, body)


def _json_body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except (ValueError, UnicodeDecodeError):
        return {}
    return body if isinstance(body, dict) else {}


class ApiClient:
    """The control API over HTTP. `transport` is for tests that bring their own."""

    def __init__(
        self,
        config: Config,
        *,
        transport: httpx.BaseTransport | None = None,
        read_seconds: float = READ_SECONDS,
    ) -> None:
        self.config = config
        self._http = httpx.Client(
            base_url=config.url,
            headers={"Authorization": f"Bearer {config.token}", "User-Agent": USER_AGENT},
            timeout=httpx.Timeout(read_seconds, connect=CONNECT_SECONDS),
            transport=transport,
            follow_redirects=False,
        )

    @classmethod
    def from_env(cls) -> ApiClient:
        """The client FLEETD_URL and FLEETD_TOKEN describe (CtlError when they do not)."""
        return cls(Config.from_env())

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # --- requests ---------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        content: Any = None,
        headers: Mapping[str, str] | None = None,
        read_seconds: float | None = None,
    ) -> httpx.Response:
        """Send one request; an error answer or a failed connection raises CtlError."""
        timeout: Any = httpx.USE_CLIENT_DEFAULT
        if read_seconds is not None:
            timeout = httpx.Timeout(read_seconds, connect=CONNECT_SECONDS)
        query = {k: _param(v) for k, v in (params or {}).items() if v is not None}
        with self._mapped():
            response = self._http.request(
                method,
                path,
                params=query,
                json=json_body,
                content=content,
                headers=dict(headers) if headers else None,
                timeout=timeout,
            )
        if response.status_code >= 400:
            raise self._error(response)
        return response

    def get(self, path: str, params: Mapping[str, Any] | None = None, **kw: Any) -> Any:
        return self._json(self.request("GET", path, params=params, **kw))

    def post(
        self,
        path: str,
        body: Any = None,
        params: Mapping[str, Any] | None = None,
        **kw: Any,
    ) -> Any:
        return self._json(self.request("POST", path, params=params, json_body=body, **kw))

    def follow(self, path: str) -> Iterator[tuple[str, Any]]:
        """The events of a progress stream (Server-Sent Events) as (event, data) until the
        API sends `end`; CtlError when the stream breaks off before that."""
        timeout = httpx.Timeout(STREAM_READ_SECONDS, connect=CONNECT_SECONDS)
        with (
            self._mapped(),
            self._http.stream(
                "GET", path, timeout=timeout, headers={"Accept": "text/event-stream"}
            ) as response,
        ):
            if response.status_code >= 400:
                response.read()
                raise self._error(response)
            for event, data in _events(response.iter_lines()):
                yield event, data
                if event == "end":
                    return
        raise CtlError(
            f"the progress stream from {self.config.shown_url} stopped before the end "
            "(the daemon may have restarted): run the same command again to follow on",
            EXIT_UNAVAILABLE,
        )

    # --- errors -----------------------------------------------------------------------------

    def _json(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except (ValueError, UnicodeDecodeError):
            raise CtlError(
                f"the answer from {self.config.shown_url}{response.request.url.path} is not "
                f"JSON ({response.headers.get('content-type', 'no content type')}): "
                "is FLEETD_URL a fleetd daemon?",
                EXIT_UNAVAILABLE,
            ) from None

    def _error(self, response: httpx.Response) -> ApiError:
        error = error_for(
            response.status_code,
            _json_body(response),
            response.reason_phrase,
            self.config.shown_url,
        )
        scrubbed = self._scrub(str(error))
        return ApiError(scrubbed, error.code, error.status, error.body)

    def _scrub(self, text: str) -> str:
        # the API never echoes a token; this keeps it so should anything in between do it
        return text.replace(self.config.token, "***")

    @contextmanager
    def _mapped(self) -> Iterator[None]:
        where = self.config.shown_url
        try:
            yield
        except httpx.ConnectTimeout:
            raise CtlError(
                f"cannot reach the fleetd API at {where}: no answer within "
                f"{CONNECT_SECONDS:g} s; the daemon must be running there (`fleetd serve`), "
                "or set FLEETD_URL to where it runs",
                EXIT_UNAVAILABLE,
            ) from None
        except httpx.ConnectError as exc:
            raise CtlError(
                f"cannot reach the fleetd API at {where} ({_why(exc)}): the daemon must be "
                "running there (`fleetd serve`), or set FLEETD_URL to where it runs",
                EXIT_UNAVAILABLE,
            ) from None
        except httpx.TimeoutException:
            raise CtlError(
                f"the fleetd API at {where} did not answer in time: it may be busy; try again, "
                "and see the daemon's log if it goes on",
                EXIT_UNAVAILABLE,
            ) from None
        except httpx.TransportError as exc:
            raise CtlError(
                f"the connection to the fleetd API at {where} failed ({_why(exc)}): try again",
                EXIT_UNAVAILABLE,
            ) from None


def _param(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def _why(exc: Exception) -> str:
    text = one_line(exc) or type(exc).__name__
    lowered = text.lower()
    if "refused" in lowered:
        return "connection refused"
    if "name or service not known" in lowered or "nodename nor servname" in lowered:
        return "unknown host name"
    return text


def _events(lines: Iterator[str]) -> Iterator[tuple[str, Any]]:
    event, data = "message", list[str]()
    for line in lines:
        if not line:
            if data:
                yield event, _decoded(data)
            event, data = "message", []
            continue
        if line.startswith(":"):  # a keep-alive comment
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
    if data:
        yield event, _decoded(data)


def _decoded(data: list[str]) -> Any:
    try:
        return json.loads("\n".join(data))
    except ValueError:
        raise CtlError(
            "the progress stream sent something that is not JSON: is FLEETD_URL a fleetd daemon?",
            EXIT_UNAVAILABLE,
        ) from None
