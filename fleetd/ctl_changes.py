"""fleetctl's change requests: each queues operations in the daemon and answers them;
`--watch` follows them until they end."""

from __future__ import annotations

import re
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from fleetd import ctl_ops
from fleetd.clock import JST
from fleetd.ctl_client import EXIT_USAGE, ApiClient, CtlError
from fleetd.ctl_show import JsonOpt, console, fail, handled, print_json, show_accepted

CodeArg = Annotated[str, typer.Argument(help="The customer's 9-digit code.")]
SerialArg = Annotated[str, typer.Argument(help="The unit's serial (US01…, 12 characters).")]
NotBefore = Annotated[
    str | None,
    typer.Option(help="Not before this time: ISO 8601, JST when no zone (2026-11-25T10:00)."),
]
Deadline = Annotated[
    str | None, typer.Option(help="Escalate when not done by then (like --not-before).")
]
ConfirmMinutes = Annotated[
    int | None, typer.Option(help="The unit's commit-confirmed timer, in minutes.")
]
IdempotencyKey = Annotated[
    str | None,
    typer.Option(help="A key of yours: the same key again answers the first request's work."),
]
Watch = Annotated[
    bool, typer.Option("--watch", help="Follow the queued operations until they end.")
]

# --- changes --------------------------------------------------------------------------------


def _when(text: str | None, option: str) -> str | None:
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise CtlError(
            f'{option} "{text}" is not a time: give ISO 8601, e.g. 2026-11-25T10:00 '
            "(Japan time when no zone is given) or 2026-11-25T10:00+09:00",
            EXIT_USAGE,
        ) from None
    if when.tzinfo is None:  # Japan time is where every deadline of the service is stated
        when = when.replace(tzinfo=JST)
    return when.isoformat()


def _options(
    not_before: str | None,
    deadline: str | None,
    confirm_minutes: int | None,
    idempotency_key: str | None,
) -> dict[str, Any]:
    given = {
        "not_before": _when(not_before, "--not-before"),
        "deadline": _when(deadline, "--deadline"),
        "confirm_minutes": confirm_minutes,
        "idempotency_key": idempotency_key,
    }
    return {k: v for k, v in given.items() if v is not None}


def submit(path: str, body: dict[str, Any] | None, *, watch: bool, as_json: bool) -> None:
    """Send one change request; show the operations it queued, and follow them with
    `watch` (the exit status then says whether they all succeeded)."""
    out = console()
    with ApiClient.from_env() as api:
        answer = api.post(path, body or None)
        if as_json:
            print_json(answer, compact=watch)
        else:
            show_accepted(out, answer)
        if watch:
            ids = [op["id"] for op in answer.get("operations", [])]
            raise typer.Exit(ctl_ops.watch_operations(api, ids, out, as_json))


@handled
def cutover(
    code: CodeArg,
    serial: Annotated[
        str | None, typer.Option(help="Only this parent unit (default: every parent).")
    ] = None,
    not_before: NotBefore = None,
    deadline: Deadline = None,
    confirm_minutes: ConfirmMinutes = None,
    idempotency_key: IdempotencyKey = None,
    watch: Watch = False,
    as_json: JsonOpt = False,
) -> None:
    """Switch the customer's parent unit(s) from V4 to V6 (4over6). Refused while the
    4over6 order is not complete, or for a unit the customer moved."""
    body = _options(not_before, deadline, confirm_minutes, idempotency_key)
    if serial:
        body["serial"] = serial
    submit(f"/customers/{code}/cutover", body, watch=watch, as_json=as_json)


@handled
def revert(
    code: CodeArg,
    serial: Annotated[
        str | None, typer.Option(help="Only this parent unit (default: every parent).")
    ] = None,
    not_before: NotBefore = None,
    deadline: Deadline = None,
    confirm_minutes: ConfirmMinutes = None,
    idempotency_key: IdempotencyKey = None,
    watch: Watch = False,
    as_json: JsonOpt = False,
) -> None:
    """Put the customer's parent unit(s) back on V4 (PPPoE), e.g. when the customer asks."""
    body = _options(not_before, deadline, confirm_minutes, idempotency_key)
    if serial:
        body["serial"] = serial
    submit(f"/customers/{code}/revert-v4", body, watch=watch, as_json=as_json)


@handled
def business_ssid(
    code: CodeArg,
    ssid: Annotated[str | None, typer.Option(help="The new business SSID.")] = None,
    keep_passphrase: Annotated[
        bool, typer.Option("--keep-passphrase", help="Change the SSID only.")
    ] = False,
    ask_passphrase: Annotated[
        bool,
        typer.Option(
            "--ask-passphrase",
            help="Type the customer's new passphrase (hidden); otherwise a strong one is made.",
        ),
    ] = False,
    not_before: NotBefore = None,
    deadline: Deadline = None,
    confirm_minutes: ConfirmMinutes = None,
    idempotency_key: IdempotencyKey = None,
    watch: Watch = False,
    as_json: JsonOpt = False,
) -> None:
    """Change the business Wi-Fi on every unit of the customer, as the customer asked
    through customer support. The passphrase is never shown: it reaches the customer only
    on a registration notice (`fleetctl notice`)."""
    if keep_passphrase and ask_passphrase:
        fail("give --keep-passphrase or --ask-passphrase, not both", EXIT_USAGE)
    body = _options(not_before, deadline, confirm_minutes, idempotency_key)
    if ssid is not None:
        body["ssid"] = ssid
    if keep_passphrase:
        body["keep_passphrase"] = True
    if ask_passphrase:
        body["passphrase"] = typer.prompt(
            "new business passphrase", hide_input=True, confirmation_prompt=True, err=True
        )
    submit(f"/customers/{code}/business-wifi", body, watch=watch, as_json=as_json)


@handled
def guest_rotate(
    code: CodeArg,
    not_before: NotBefore = None,
    deadline: Deadline = None,
    confirm_minutes: ConfirmMinutes = None,
    idempotency_key: IdempotencyKey = None,
    watch: Watch = False,
    as_json: JsonOpt = False,
) -> None:
    """A new generated guest passphrase on every unit of the customer."""
    body = _options(not_before, deadline, confirm_minutes, idempotency_key)
    submit(f"/customers/{code}/guest-rotate", body, watch=watch, as_json=as_json)


@handled
def original_ssid_set(
    code: CodeArg,
    name: Annotated[
        str, typer.Argument(help="The shop's own guest SSID (15 characters or fewer advised).")
    ],
    not_before: NotBefore = None,
    deadline: Deadline = None,
    confirm_minutes: ConfirmMinutes = None,
    idempotency_key: IdempotencyKey = None,
    watch: Watch = False,
    as_json: JsonOpt = False,
) -> None:
    """Name the guest network after the shop (the Original SSID add-on, 500 yen a month)."""
    body = _options(not_before, deadline, confirm_minutes, idempotency_key)
    body["ssid"] = name
    submit(f"/customers/{code}/original-ssid", body, watch=watch, as_json=as_json)


@handled
def original_ssid_clear(
    code: CodeArg,
    not_before: NotBefore = None,
    deadline: Deadline = None,
    confirm_minutes: ConfirmMinutes = None,
    idempotency_key: IdempotencyKey = None,
    watch: Watch = False,
    as_json: JsonOpt = False,
) -> None:
    """Back to the default guest SSID."""
    body = _options(not_before, deadline, confirm_minutes, idempotency_key)
    body["clear"] = True
    submit(f"/customers/{code}/original-ssid", body, watch=watch, as_json=as_json)


def _host_key(text: str | None, file: Path | None) -> str:
    if file is not None:
        try:
            text = file.read_text(encoding="utf-8").strip().splitlines()[0]
        except (OSError, UnicodeDecodeError, IndexError) as exc:
            raise CtlError(
                f"--host-key-file {file}: cannot read a key: {exc}", EXIT_USAGE
            ) from None
    if not text:
        raise CtlError(
            "give the link item's SSH host key: --host-key 'ssh-ed25519 AAAA…' or "
            "--host-key-file FILE (a .pub file or a known_hosts line)",
            EXIT_USAGE,
        )
    words = text.split()
    # a known_hosts line starts with the host names; the key type follows
    if len(words) >= 3 and not re.match(r"(ssh-|ecdsa-|sk-)", words[0]):
        words = words[1:]
    return " ".join(words)


def _password(file: Path | None) -> str:
    if file is not None:
        try:
            lines = file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise CtlError(f"--password-file {file}: cannot read it: {exc}", EXIT_USAGE) from None
        return lines[0] if lines else ""
    if sys.stdin.isatty():
        return str(typer.prompt("the link item's login password", hide_input=True, err=True))
    return sys.stdin.readline().rstrip("\r\n")  # piped in, e.g. from a password manager


@handled
def swap(
    serial: Annotated[str, typer.Argument(help="The faulty parent or access point.")],
    new_serial: Annotated[str, typer.Option(help="The link item's serial.")],
    address: Annotated[str, typer.Option(help="The link item's management address.")],
    ssh_port: Annotated[int, typer.Option(help="Its SSH port.")],
    host_key: Annotated[
        str | None, typer.Option(help="Its SSH host key, 'ssh-ed25519 AAAA…' (pinned as given).")
    ] = None,
    host_key_file: Annotated[
        Path | None, typer.Option(help="Or a file with it: a .pub file or a known_hosts line.")
    ] = None,
    snmp_port: Annotated[int | None, typer.Option(help="Its SNMP port.")] = None,
    username: Annotated[str | None, typer.Option(help="Its login name (admin).")] = None,
    password_file: Annotated[
        Path | None,
        typer.Option(help="A file whose first line is its password (else asked, hidden)."),
    ] = None,
    platform: Annotated[str | None, typer.Option(help="Its driver platform (uspot).")] = None,
    not_before: NotBefore = None,
    deadline: Deadline = None,
    confirm_minutes: ConfirmMinutes = None,
    idempotency_key: IdempotencyKey = None,
    watch: Watch = False,
    as_json: JsonOpt = False,
) -> None:
    """Replace a faulty parent or access point by a link item (always V4; switched to V6
    about two business days later when the shop was on V6). Never a child."""
    body = _options(not_before, deadline, confirm_minutes, idempotency_key)
    body.update(
        new_serial=new_serial,
        address=address,
        ssh_port=ssh_port,
        host_key=_host_key(host_key, host_key_file),
    )
    for key, value in (("snmp_port", snmp_port), ("username", username), ("platform", platform)):
        if value is not None:
            body[key] = value
    body["password"] = _password(password_file)
    submit(f"/units/{serial}/swap", body, watch=watch, as_json=as_json)


@handled
def stop(
    serial: SerialArg,
    not_before: NotBefore = None,
    deadline: Deadline = None,
    idempotency_key: IdempotencyKey = None,
    watch: Watch = False,
    as_json: JsonOpt = False,
) -> None:
    """Stop the unit's account (no internet, no Wi-Fi), e.g. for a cancellation."""
    body = _options(not_before, deadline, None, idempotency_key)
    submit(f"/units/{serial}/stop", body, watch=watch, as_json=as_json)


@handled
def resume(
    serial: SerialArg,
    not_before: NotBefore = None,
    deadline: Deadline = None,
    idempotency_key: IdempotencyKey = None,
    watch: Watch = False,
    as_json: JsonOpt = False,
) -> None:
    """Resume a stopped unit's account."""
    body = _options(not_before, deadline, None, idempotency_key)
    submit(f"/units/{serial}/resume", body, watch=watch, as_json=as_json)


def add_commands(app: typer.Typer) -> None:
    app.command()(cutover)
    app.command()(revert)
    app.command("business-ssid")(business_ssid)
    app.command("guest-rotate")(guest_rotate)
    original = typer.Typer(
        help="The Original SSID: the guest network named after the shop.", no_args_is_help=True
    )
    original.command("set")(original_ssid_set)
    original.command("clear")(original_ssid_clear)
    app.add_typer(original, name="original-ssid")
    app.command()(swap)
    app.command()(stop)
    app.command()(resume)
