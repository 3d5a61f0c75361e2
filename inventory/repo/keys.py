"""The secret-key register: a wrong key is refused before anything is written with it."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from inventory.errors import SecretKeyError
from inventory.models import SecretKey
from inventory.secrets import SecretBox

_KEY_CHECKED = "fleetd.secret_key_checked"

_CHECK_TEXT = "fleetd secret key check"
_CHECK_PURPOSE = "secret_keys.check"


async def check_secret_key(session: AsyncSession, box: SecretBox) -> None:
    """Refuse a key that is not the one this database's secrets are encrypted with; the
    first key a database sees is registered. Checked once per session."""
    if session.info.get(_KEY_CHECKED) == box.kid:
        return
    registered: Sequence[SecretKey] = list(await session.scalars(select(SecretKey)))
    if not registered:
        session.add(
            SecretKey(kid=box.kid, check_token=box.encrypt(_CHECK_TEXT, purpose=_CHECK_PURPOSE))
        )
    else:
        mine = [k for k in registered if k.kid in box.kids]
        if not mine:
            kids = ", ".join(sorted(k.kid for k in registered))
            raise SecretKeyError(
                f"this database's secrets are encrypted with key {kids}, but the key given is "
                f"{box.kid}: give fleetd the key it was set up with (FLEETD_SECRET_KEY or "
                "FLEETD_SECRET_KEY_FILE)"
            )
        for key in mine:
            if box.decrypt(key.check_token, purpose=_CHECK_PURPOSE) != _CHECK_TEXT:
                raise SecretKeyError(f"key {key.kid} fails its check: the key file was altered")
        if box.kid not in {k.kid for k in registered}:
            token = box.encrypt(_CHECK_TEXT, purpose=_CHECK_PURPOSE)
            session.add(SecretKey(kid=box.kid, check_token=token))
    session.info[_KEY_CHECKED] = box.kid
