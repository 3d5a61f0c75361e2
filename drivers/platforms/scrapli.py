"""scrapli 2026.x (libscrapli) sessions to U-SPOT units, from `uspot_scrapli.yaml`.

The definition has two modes, ``exec`` (``US01SP000000> ``) and ``configuration``
(``US01SP000000(config)# ``). In scrapli 2.x an input sent without ``requested_mode`` goes to
the definition's default mode (``exec``): configuration commands must be sent with
``requested_mode=CONFIGURATION`` (scrapli enters the mode first, with ``configure``).

Two transports work against a unit:

* ``ssh2`` (default): libscrapli's own libssh2 client, in-process; no ``ssh`` binary, no
  ``~/.ssh/config``. Host keys are checked against ``known_hosts_path``.
* ``bin``: the system ``ssh`` (OpenSSH) in a pty; ``known_hosts_path`` plus strict host key
  checking (``StrictHostKeyChecking=yes``). One ``ssh`` process per session.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Literal

from scrapli import AuthOptions, Cli, SessionOptions, TransportBinOptions, TransportSsh2Options
from scrapli.cli import LoadedDefinition

PLATFORM_NAME = "uspot"
DEFINITION_RESOURCE = "uspot_scrapli.yaml"
EXEC = "exec"
CONFIGURATION = "configuration"
DEFAULT_USERNAME = "admin"

Transport = Literal["ssh2", "bin"]


def definition_text() -> str:
    """The U-SPOT scrapli definition (YAML), read from the package."""
    return (
        files(__package__ or "drivers.platforms")
        .joinpath(DEFINITION_RESOURCE)
        .read_text(encoding="utf-8")
    )


def load_definition() -> LoadedDefinition:
    """The definition as scrapli's `LoadedDefinition` (no file path needed at run time)."""
    return LoadedDefinition(platform_name=PLATFORM_NAME, definition=definition_text())


def build_cli(
    host: str,
    *,
    port: int = 22,
    username: str = DEFAULT_USERNAME,
    password: str | None = None,
    private_key_path: str | Path | None = None,
    known_hosts_path: str | Path | None = None,
    host_key_checking: bool = True,
    transport: Transport = "ssh2",
    operation_timeout_s: float = 30,
    logging_uid: str | None = None,
) -> Cli:
    """A scrapli `Cli` for one unit; not opened yet (``cli.open()`` / ``await cli.open_async()``).

    Give a password, a private key path, or both. With ``host_key_checking`` (the default) a
    ``known_hosts_path`` is required and an unknown or changed host key fails the open.
    """
    if password is None and private_key_path is None:
        raise ValueError("give a password or a private key path")
    if host_key_checking and known_hosts_path is None:
        raise ValueError("host key checking needs a known_hosts_path")
    known_hosts = str(known_hosts_path) if known_hosts_path is not None else None
    transport_options: TransportSsh2Options | TransportBinOptions
    if transport == "ssh2":
        # libssh2 checks the host key whenever it is given a known_hosts file.
        transport_options = TransportSsh2Options(
            known_hosts_path=known_hosts if host_key_checking else None
        )
    elif transport == "bin":
        transport_options = TransportBinOptions(
            known_hosts_path=known_hosts,
            enable_strict_key=host_key_checking,
        )
    else:
        raise ValueError(f'unknown scrapli transport "{transport}": expected ssh2 or bin')
    return Cli(
        host,
        port=port,
        definition_file_or_name=load_definition(),
        auth_options=AuthOptions(
            username=username,
            password=password,
            private_key_path=str(private_key_path) if private_key_path is not None else None,
        ),
        # In nanoseconds: scrapli's own seconds option takes whole seconds only.
        session_options=SessionOptions(operation_timeout_ns=int(operation_timeout_s * 1e9)),
        transport_options=transport_options,
        logging_uid=logging_uid,
    )
