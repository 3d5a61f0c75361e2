"""`fleetd users`: a staff user's token printed once and working, an SSH key registered."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncssh
from typer.testing import CliRunner, Result

from fleetd.cli import CliState, create_app
from fleetd.settings import Settings
from inventory import audit, users
from inventory.redact import Redactor
from inventory.store import open_store


def fleetd(args: list[str], *, url: str) -> Result:
    settings = Settings(database_url=url)
    return CliRunner().invoke(create_app(), args, obj=CliState(settings, Redactor()))


async def _login(url: str, token: str, name: str, key: str) -> tuple[str | None, bool, list[str]]:
    async with open_store(url) as store, store.sessions() as session:
        user = await users.authenticate(session, token)
        by_key = await users.user_for_ssh_key(session, name, key)
        logged = [f"{e.action} {e.target} {e.actor}" for e in await audit.entries(session)]
    return (user.role if user else None), by_key is not None, logged


def test_users_add_prints_a_working_token_once_and_add_key_registers_a_key(
    database_url: str, tmp_path: Path
) -> None:
    assert fleetd(["migrate"], url=database_url).exit_code == 0
    added = fleetd(["users", "add", "alice", "--role", "tech"], url=database_url)
    assert added.exit_code == 0, added.output
    token = added.stdout.strip()
    assert token.startswith("fleetd_") and "\n" not in token
    assert "shown this once" in added.stderr

    key = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    keyfile = tmp_path / "alice.pub"
    keyfile.write_text(key)
    registered = fleetd(["users", "add-key", "alice", str(keyfile)], url=database_url)
    assert registered.exit_code == 0, registered.output
    assert registered.stdout.startswith("alice may log in with the key SHA256:")

    role, by_key, logged = asyncio.run(_login(database_url, token, "alice", key))
    assert role == "tech" and by_key
    assert any(line.startswith("user_create alice cli:") for line in logged)
    assert any(line.startswith("user_add_key alice cli:") for line in logged)

    renewed = fleetd(["users", "token", "alice"], url=database_url)
    assert renewed.exit_code == 0 and renewed.stdout.strip() != token
    assert asyncio.run(_login(database_url, token, "alice", key))[0] is None


def test_a_bad_role_or_a_second_user_of_one_name_is_one_clear_line(database_url: str) -> None:
    assert fleetd(["migrate"], url=database_url).exit_code == 0
    bad = fleetd(["users", "add", "bob", "--role", "root"], url=database_url)
    assert bad.exit_code == 1
    assert bad.stderr == "fleetd: role 'root': a role is one of: cs, tech, admin, auditor\n"
    assert fleetd(["users", "add", "bob", "--role", "cs"], url=database_url).exit_code == 0
    again = fleetd(["users", "add", "bob", "--role", "cs"], url=database_url)
    assert again.exit_code == 1 and "'bob' exists" in again.stderr
