"""The workflows the engine runs and the requests that create their operations, by kind.

    WORKFLOWS[kind].run(ctx)                         carries out one operation
    REQUESTS[kind](session, ctx, target, params)     checks the rules, writes the operations

    cutover, revert_v4          a parent's serial                          cutover.py
    business_wifi, guest_rotate,
    original_ssid               a customer code (or a serial of one of     wifi.py
                                its units): one operation per unit
    account_stop, account_resume  a unit's serial                          account.py
    link_swap                   the faulty parent's or access point's      swap.py
                                serial

Every request also takes `idempotency_key` (else one is derived from the kind, the target
and the request id), `not_before` and `deadline`. `fleetd.workflows.common` holds what they
share: the push of a change with `commit confirmed`, verification and rollback.
"""

from __future__ import annotations

from fleetd.workflows.account import (
    AccountResume,
    AccountStop,
    request_account_resume,
    request_account_stop,
)
from fleetd.workflows.base import (
    ACCOUNT_RESUME,
    ACCOUNT_STOP,
    BUSINESS_WIFI,
    CUTOVER,
    GUEST_ROTATE,
    LINK_SWAP,
    ORIGINAL_SSID,
    REVERT_V4,
    RequestFn,
    Workflow,
)
from fleetd.workflows.cutover import Cutover, RevertV4, request_cutover, request_revert_v4
from fleetd.workflows.swap import LinkSwap, request_link_swap
from fleetd.workflows.wifi import (
    BusinessWifi,
    GuestRotate,
    OriginalSsid,
    request_business_wifi,
    request_guest_rotate,
    request_original_ssid,
)

WORKFLOWS: dict[str, Workflow] = {
    CUTOVER: Cutover(),
    REVERT_V4: RevertV4(),
    BUSINESS_WIFI: BusinessWifi(),
    GUEST_ROTATE: GuestRotate(),
    ORIGINAL_SSID: OriginalSsid(),
    ACCOUNT_STOP: AccountStop(),
    ACCOUNT_RESUME: AccountResume(),
    LINK_SWAP: LinkSwap(),
}

REQUESTS: dict[str, RequestFn] = {
    CUTOVER: request_cutover,
    REVERT_V4: request_revert_v4,
    BUSINESS_WIFI: request_business_wifi,
    GUEST_ROTATE: request_guest_rotate,
    ORIGINAL_SSID: request_original_ssid,
    ACCOUNT_STOP: request_account_stop,
    ACCOUNT_RESUME: request_account_resume,
    LINK_SWAP: request_link_swap,
}

__all__ = ["REQUESTS", "WORKFLOWS"]
