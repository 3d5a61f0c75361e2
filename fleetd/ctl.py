"""`fleetctl`: the staff's command-line client of the fleetd control API.

    FLEETD_URL      the daemon's control API (default http://127.0.0.1:8080)
    FLEETD_TOKEN    your API token (an admin makes it: `fleetd users add NAME --role ROLE`)
    FLEETD_USER     your user name at the remote-login bastion (`fleetctl login`)
    FLEETD_BASTION  the bastion as HOST[:PORT] (default: the API's host, port 2222)

    fleetctl customers 138301482 | 03-1234-5678 | カフェ     look a customer up
    fleetctl v6 CODE [--live]                  is the shop on V6? the verdict in words first
    fleetctl cutover CODE | revert CODE        V4 -> V6 (4over6), or back to V4
    fleetctl business-ssid CODE --ssid NAME    the customer's business Wi-Fi change
    fleetctl guest-rotate CODE                 a new guest passphrase
    fleetctl original-ssid set CODE NAME | clear CODE
    fleetctl swap SERIAL --new-serial … --address … --ssh-port … --host-key …
    fleetctl stop SERIAL | resume SERIAL       a unit's account
    fleetctl notice CODE --requester owner --name NAME --to installation
    fleetctl ops list | show ID | watch ID… | cancel ID | retry ID
    fleetctl batch create KIND --customers …|--serials …|--filter K=V | show ID | watch ID
    fleetctl import contracts|v6-orders|fleet FILE [--dry-run] [--skip-invalid]
    fleetctl month-end preview|run [--month YYYY-MM]
    fleetctl audit [--target …] [--actor …]
    fleetctl login SERIAL                      remote login to a unit through the bastion

Every command takes --json: the API's JSON answer as it came, for scripts. A change request
answers the operations it queued; --watch follows them until they end.

Exit status: 0 done; 1 refused (a rule broken, no such customer or unit, a conflict) or a
followed operation or batch ended without success; 2 a usage or configuration problem
(options, FLEETD_URL, FLEETD_TOKEN); 3 the daemon cannot be reached or failed; 4 not signed
in or not allowed (the token, or the role).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.text import Text

from fleetd import ctl_changes, ctl_ops
from fleetd.ctl_client import (
    DEFAULT_URL,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    ApiClient,
    ApiError,
    CtlError,
)
from fleetd.ctl_show import (
    ADDRESS_KINDS,
    JsonOpt,
    console,
    fail,
    handled,
    print_answer,
    print_json,
    show_customer,
    show_customers,
    show_v6,
)

DEFAULT_BASTION_PORT = 2222
LIVE_READ_SECONDS = 120.0  # a live V6 status reads the units before it answers
_CODE = re.compile(r"\d{9}")
_PHONE = re.compile(r"[\d\-+() ]{6,}")
_SERIAL = re.compile(r"US01[A-Z0-9]{8}")
_USER = re.compile(r"[a-z_][a-z0-9_.-]{0,63}")

CodeArg = Annotated[str, typer.Argument(help="The customer's 9-digit code.")]


# --- look-ups -------------------------------------------------------------------------------


@handled
def customers(
    query: Annotated[
        str | None,
        typer.Argument(help="A customer code, a phone number, or the start of the kana."),
    ] = None,
    code: Annotated[str | None, typer.Option(help="The 9-digit customer code.")] = None,
    phone: Annotated[str | None, typer.Option(help="With or without hyphens.")] = None,
    kana: Annotated[str | None, typer.Option(help="The start of the kana reading.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Find customers by code, phone number or kana; one found is shown with its addresses,
    line and units."""
    given = {k: v for k, v in (("code", code), ("phone", phone), ("kana", kana)) if v}
    if query:
        text = query.strip()
        if _CODE.fullmatch(text):
            given["code"] = text
        elif _PHONE.fullmatch(text):
            given["phone"] = text
        else:
            given["kana"] = text
    if len(given) != 1:
        fail("give one customer code, phone number or kana (e.g. fleetctl customers 03-1234-5678)",
             EXIT_USAGE)  # fmt: skip
    with ApiClient.from_env() as api:
        found = api.get("/customers", given)
        if as_json:
            print_json(found)
            return
        out = console()
        if len(found) != 1:
            show_customers(out, found)
            return
        number = found[0]["code"]
        detail = api.get(f"/customers/{number}")
        units = api.get(f"/customers/{number}/units")
        try:
            line = api.get(f"/customers/{number}/line")
        except ApiError as exc:
            if exc.status != 404:
                raise
            line = None
    show_customer(out, detail, units, line)


@handled
def v6(
    code: CodeArg,
    live: Annotated[
        bool, typer.Option("--live", help="Read the parent units now before answering.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Is this shop on V6? The verdict in plain words first (to read out on the phone), then
    the 4over6 order, each parent unit's reading and its age, and open or failed work."""
    with ApiClient.from_env() as api:
        status = api.get(
            f"/customers/{code}/v6",
            {"live": True} if live else None,
            read_seconds=LIVE_READ_SECONDS if live else None,
        )
    print_answer(status, as_json, show_v6)


# --- the registration notice ----------------------------------------------------------------


class RequesterKind(StrEnum):
    owner = "owner"
    shop_staff = "shop-staff"


class Destination(StrEnum):
    installation = "installation"
    contract_holder = "contract-holder"
    billing = "billing"


@handled
def notice(
    code: CodeArg,
    requester: Annotated[
        RequesterKind, typer.Option(help="Who asked: the shop's owner or its staff.")
    ],
    name: Annotated[str, typer.Option(help="The name they gave.")],
    to: Annotated[Destination, typer.Option(help="Which registered address it is posted to.")],
    address: Annotated[
        str | None,
        typer.Option(help="The address as the caller read it: checked against the registered one."),
    ] = None,
    out_file: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Where to write the PDF (registration-notice-CODE.pdf)."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite the file.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """The registration notice (business SSID and passphrase, with a Wi-Fi QR code) as a PDF
    to print and post to one of the customer's registered addresses. The only way a business
    passphrase leaves fleetd: never read it out, never e-mail it."""
    path = out_file or Path(f"registration-notice-{code}.pdf")
    if path.exists() and not force:
        fail(f"{path} exists: give --out FILE, or --force to overwrite it", EXIT_USAGE)
    kind = to.value.replace("-", "_")
    destination: dict[str, Any] = {"kind": kind}
    if address is not None:
        destination["address"] = address
    body = {
        "requester": {"kind": requester.value.replace("-", "_"), "name": name},
        "destination": destination,
    }
    with ApiClient.from_env() as api:
        pdf = api.request("POST", f"/customers/{code}/registration-notice", json_body=body)
        customer = api.get(f"/customers/{code}")
    try:
        path.write_bytes(pdf.content)
        path.chmod(0o600)  # it holds the business passphrase
    except OSError as exc:
        fail(f"cannot write {path}: {exc.strerror or exc}", EXIT_USAGE)
    posted = next((a for a in customer.get("addresses", []) if a["kind"] == kind), None)
    if as_json:
        print_json({"file": str(path), "bytes": len(pdf.content), "destination": posted})
        return
    where = f"〒{posted['postal_code']} {posted['address']}" if posted else "-"
    console().print(
        Text(
            f"wrote {path} ({len(pdf.content)} bytes): print it and post it to the "
            f"{ADDRESS_KINDS[kind]} address, {where}; it holds the business passphrase: "
            "delete the file once printed"
        )
    )


# --- remote login ---------------------------------------------------------------------------


def bastion_address(api_url: str, setting: str | None) -> tuple[str, int]:
    """The bastion's host and port: FLEETD_BASTION as HOST[:PORT] or [V6]:PORT, by default
    the API's host on port 2222."""
    default_host = httpx.URL(api_url).host
    text = (setting or "").strip()
    if not text:
        return default_host, DEFAULT_BASTION_PORT
    host, port = text, ""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":")
    elif text.count(":") == 1:
        host, port = text.split(":")
    if not port:
        return host or default_host, DEFAULT_BASTION_PORT
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise CtlError(
            f'FLEETD_BASTION "{text}": give HOST or HOST:PORT, e.g. fleetd-host:2222', EXIT_USAGE
        )
    return host or default_host, int(port)


def login_command(
    serial: str,
    user: str,
    host: str,
    port: int,
    identity: Path | None = None,
    options: Sequence[str] = (),
) -> list[str]:
    """The `ssh` command line that opens a session on `serial` through the bastion."""
    args = ["ssh", "-t", "-p", str(port)]
    if identity is not None:
        args += ["-i", str(identity)]
    for option in options:
        args += ["-o", option]
    return [*args, f"{user}@{host}", serial]


@handled
def login(
    serial: Annotated[str, typer.Argument(help="The unit's serial (US01…).")],
    user: Annotated[
        str | None,
        typer.Option(
            envvar="FLEETD_USER",
            help="Your user name at the bastion (FLEETD_USER).",
            show_envvar=False,
        ),
    ] = None,
    identity: Annotated[
        Path | None, typer.Option("--identity", "-i", help="Your SSH private key file.")
    ] = None,
    ssh_options: Annotated[
        list[str] | None,
        typer.Option(
            "--ssh-option",
            "-o",
            help="An ssh -o option, e.g. UserKnownHostsFile=FILE (repeat for several).",
        ),
    ] = None,
    print_only: Annotated[
        bool, typer.Option("--print", help="Print the ssh command instead of running it.")
    ] = False,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="Print the ssh command as a JSON list instead of running it."),
    ] = False,
) -> None:
    """Remote login to a unit through the daemon's bastion (tech support): the unit's
    credentials stay in fleetd; your session is recorded in the audit log."""
    wanted = serial.strip().upper()
    if not _SERIAL.fullmatch(wanted):
        fail(f'serial "{serial}": a serial is 12 characters starting with US01', EXIT_USAGE)
    if not user:
        fail(
            "who are you at the bastion? give --user NAME or set FLEETD_USER to your fleetd "
            "user name",
            EXIT_USAGE,
        )
    if not _USER.fullmatch(user):
        fail(f'--user "{user}": a fleetd user name is lower case, e.g. alice', EXIT_USAGE)
    url = (os.environ.get("FLEETD_URL") or DEFAULT_URL).strip()
    try:
        host, port = bastion_address(url, os.environ.get("FLEETD_BASTION"))
    except httpx.InvalidURL:
        fail(f'FLEETD_URL "{url}" is not an http(s) URL', EXIT_USAGE)
    for option in ssh_options or ():
        if option.startswith("-") or "=" not in option:
            fail(f'--ssh-option "{option}": give it as NAME=VALUE', EXIT_USAGE)
    command = login_command(wanted, user, host, port, identity, ssh_options or ())
    if as_json:
        print_json(command)
        return
    if print_only:
        typer.echo(shlex.join(command))
        return
    ssh = shutil.which("ssh")
    if ssh is None:
        fail("ssh is not installed: install OpenSSH's client (openssh-client)", EXIT_UNAVAILABLE)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvp(ssh, command)  # noqa: S606 - ssh is the tool; the arguments are checked above
    except OSError as exc:
        fail(f"cannot run {ssh}: {exc.strerror or exc}", EXIT_UNAVAILABLE)


# --- the application ------------------------------------------------------------------------


def create_app() -> typer.Typer:
    """The `fleetctl` application (a test invokes it with typer's CliRunner)."""
    app = typer.Typer(
        name="fleetctl",
        help="Staff's client of the fleetd control API (FLEETD_URL, FLEETD_TOKEN). Every "
        "command takes --json for scripts.",
        no_args_is_help=True,
        add_completion=False,
        # rich tracebacks print local variables, and those can hold the token
        pretty_exceptions_enable=False,
    )
    app.command()(customers)
    app.command()(v6)
    ctl_changes.add_commands(app)
    app.command()(notice)
    ctl_ops.add_commands(app)
    app.command()(login)
    return app


def main(argv: Sequence[str] | None = None) -> None:
    create_app()(args=list(argv) if argv is not None else None, prog_name="fleetctl")
