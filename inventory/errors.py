"""The one error tree of fleetd.

    FleetError
    ├── RuleViolation        a domain rule refused the input (field, value, rule)
    ├── NotFound             no such customer, unit, operation …
    ├── Conflict             the request clashes with what is stored
    ├── SecretKeyError       the encryption key is missing or wrong
    ├── StoreError           the database cannot be used: unreachable, or not at the schema head
    └── UnitError            talking to a unit failed; every one names the unit's serial
        ├── Unreachable      no TCP connection, or the line dropped before an answer
        ├── AuthFailed       the unit refused the credentials
        ├── HostKeyMismatch  the unit's host key is not the pinned one (nothing was sent)
        ├── CommandFailed    the unit answered with a `% …` error line
        ├── Timeout          the unit did not answer in time (never reported as AuthFailed)
        └── VerificationFailed  a change landed but the unit did not show the intended result

It lives in `inventory`, the lowest layer, so that `drivers`, `fleetd` and `api` can all
raise and catch the same classes; the API maps the tree to HTTP statuses in one place.
"""

from __future__ import annotations


class FleetError(Exception):
    """Base of every error fleetd raises on purpose."""


class RuleViolation(FleetError):
    """Input that breaks a rule of the service; says which field, which value, which rule."""

    def __init__(self, field: str, value: object, rule: str, *, hint: str = "") -> None:
        self.field = field
        self.value = value
        self.rule = rule
        self.hint = hint
        shown = "" if value is None else f" {value!r}"
        message = f"{field}{shown}: {rule}"
        if hint:
            message += f" ({hint})"
        super().__init__(message)


class NotFound(FleetError):
    def __init__(self, kind: str, key: object) -> None:
        self.kind = kind
        self.key = key
        super().__init__(f"no {kind} {key}")


class Conflict(FleetError):
    pass


class SecretKeyError(FleetError):
    pass


class StoreError(FleetError):
    """The database cannot be opened or is not at the schema this fleetd expects."""


class UnitError(FleetError):
    """A unit could not be read or changed. `serial` names it; `retryable` guides the engine."""

    retryable = False

    def __init__(self, serial: str, detail: str) -> None:
        self.serial = serial
        self.detail = detail
        super().__init__(f"{serial}: {detail}")


class Unreachable(UnitError):
    retryable = True


class Timeout(UnitError):
    retryable = True


class GarbledAnswer(UnitError):
    """The unit's answer was cut short or not in the documented format (a line dropping
    characters, a transport that stopped reading too early): read again later."""

    retryable = True


class AuthFailed(UnitError):
    pass


class HostKeyMismatch(UnitError):
    pass


class CommandFailed(UnitError):
    """The unit refused a command; `command` is what was sent (secrets masked)."""

    def __init__(self, serial: str, command: str, answer: str) -> None:
        self.command = command
        self.answer = answer
        super().__init__(serial, f"{command!r} refused: {answer}")


class VerificationFailed(UnitError):
    """After a change, the unit does not show what it should; `detail` says what, in words
    staff can repeat ("tunnel did not come up: AFTR unreachable")."""
