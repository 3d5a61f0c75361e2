"""Staff users: tokens shown once and stored hashed, roles, SSH keys for the bastion."""

from __future__ import annotations

import asyncssh
import pytest
from sqlalchemy import select

from inventory import users
from inventory.errors import Conflict, NotFound, RuleViolation
from inventory.store import Store


def _public_key(comment: str = "alice@laptop") -> str:
    key = asyncssh.generate_private_key("ssh-ed25519", comment=comment)
    return key.export_public_key("openssh").decode()


async def test_a_token_logs_its_user_in_and_only_its_hash_is_stored(store: Store) -> None:
    async with store.transaction() as session:
        user, token = await users.create_user(session, "alice", "tech")
    assert token.startswith("fleetd_") and len(token) > 40
    async with store.sessions() as session:
        found = await users.authenticate(session, token)
        assert found is not None and (found.name, found.role) == ("alice", "tech")
        assert await users.authenticate(session, token + "x") is None
        assert await users.authenticate(session, "") is None
        stored = (await session.scalars(select(users.StaffUser.token_hash))).all()
    assert token not in stored and stored == [users.hash_token(token)]
    assert "fleetd_" not in repr(user) and user.token_hash not in repr(user)


async def test_a_disabled_user_or_a_replaced_token_no_longer_logs_in(store: Store) -> None:
    async with store.transaction() as session:
        _user, first = await users.create_user(session, "bob", "cs")
        second = await users.new_user_token(session, "bob")
    async with store.transaction() as session:
        assert await users.authenticate(session, first) is None
        assert await users.authenticate(session, second) is not None
        await users.set_disabled(session, "bob")
    async with store.sessions() as session:
        assert await users.authenticate(session, second) is None


async def test_names_and_roles_are_checked_and_names_are_unique(store: Store) -> None:
    async with store.transaction() as session:
        with pytest.raises(RuleViolation, match="a role is one of: cs, tech, admin, auditor"):
            await users.create_user(session, "carol", "root")
        with pytest.raises(RuleViolation, match="user name") as caught:
            await users.create_user(session, "Carol Smith", "cs")
        assert caught.value.field == "name" and caught.value.value == "Carol Smith"
        await users.create_user(session, "carol", "admin")
        with pytest.raises(Conflict, match="'carol' exists"):
            await users.create_user(session, "carol", "cs")


async def test_an_ssh_key_finds_its_user_and_no_other(store: Store) -> None:
    alice_key, bob_key = _public_key(), _public_key("bob@desk")
    async with store.transaction() as session:
        await users.create_user(session, "alice", "tech")
        await users.create_user(session, "bob", "cs")
        row = await users.add_ssh_key(session, "alice", alice_key + "\n")
        again = await users.add_ssh_key(session, "alice", alice_key)
        await users.add_ssh_key(session, "bob", bob_key)
        assert again.id == row.id  # the same key twice is one key
        assert row.fingerprint.startswith("SHA256:")
        with pytest.raises(Conflict, match="belongs to another user"):
            await users.add_ssh_key(session, "bob", alice_key)
    async with store.sessions() as session:
        found = await users.user_for_ssh_key(session, "alice", alice_key)
        assert found is not None and found.name == "alice"
        assert await users.user_for_ssh_key(session, "alice", bob_key) is None
        assert await users.user_for_ssh_key(session, "bob", alice_key) is None
        assert await users.user_for_ssh_key(session, "mallory", alice_key) is None
        assert await users.user_for_ssh_key(session, "alice", "ssh-ed25519 broken") is None
    async with store.transaction() as session:
        await users.set_disabled(session, "alice")
    async with store.sessions() as session:
        assert await users.user_for_ssh_key(session, "alice", alice_key) is None


async def test_a_bad_key_is_refused_without_echoing_a_private_key(store: Store) -> None:
    private = asyncssh.generate_private_key("ssh-ed25519").export_private_key().decode()
    async with store.transaction() as session:
        await users.create_user(session, "dave", "tech")
        with pytest.raises(RuleViolation, match="never the private key") as caught:
            await users.add_ssh_key(session, "dave", private)
        assert private not in str(caught.value)
        with pytest.raises(RuleViolation, match="is not an OpenSSH public key"):
            await users.add_ssh_key(session, "dave", "ssh-ed25519 AAAAnot-base64")
        with pytest.raises(NotFound, match="no user erin"):
            await users.add_ssh_key(session, "erin", _public_key())
