"""The registration notice (登録通知書): the only way a business passphrase leaves the system.

`render_notice(...)` gives a printable A4 PDF, in Japanese, for the envelope to the customer's
registered address: the shop, its customer code, the business SSID and passphrase, and a
Wi-Fi QR code a phone joins with. It is built in memory and never written to disk or logged;
whoever calls it decides where the bytes go (the API answers them to staff who print and post
them).

The Japanese text uses a CID font built into every PDF reader (HeiseiKakuGo-W5), so no font
file ships with fleetd. SSIDs and passphrases in plain ASCII are set in a monospaced font,
where 0/O and 1/l/I look different, because the customer types them by hand. The page itself
is laid out in `fleetd.notice_pdf`, imported (with reportlab) only when a notice is rendered.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

from inventory.errors import RuleViolation
from inventory.rules import assert_customer_code_format

if TYPE_CHECKING:
    from reportlab.graphics.barcode.qr import QrCodeWidget

SENDER = "U-SPOT カスタマーサポート"

# The characters the Wi-Fi QR format (ZXing's WIFI: URI) escapes with a backslash.
_WIFI_SPECIAL = frozenset('\\;,:"')


def wifi_escape(value: str) -> str:
    """`value` with ``\\ ; , : "`` escaped by a backslash, as the Wi-Fi QR format wants."""
    return "".join("\\" + ch if ch in _WIFI_SPECIAL else ch for ch in value)


def wifi_qr_payload(ssid: str, passphrase: str) -> str:
    """What the notice's QR code holds: ``WIFI:T:WPA;S:<ssid>;P:<passphrase>;;``.

    Phones' cameras read it and offer to join the network. WPA covers WPA2 and WPA3 in the
    readers that matter (iOS, Android).
    """
    return f"WIFI:T:WPA;S:{wifi_escape(ssid)};P:{wifi_escape(passphrase)};;"


def render_notice(
    *,
    customer_code: str,
    shop_name: str,
    ssid: str,
    passphrase: str,
    recipient: str,
    postal_code: str,
    address: str,
    issued_on: date,
    requester: str,
) -> bytes:
    """The registration notice as a one-page A4 PDF.

    ``recipient``, ``postal_code`` and ``address`` are the envelope's: one of the customer's
    registered addresses (the caller checks that). ``requester`` is who asked for it (the
    owner or a member of the shop's staff), printed so the customer can tell who did.
    Raises `RuleViolation` for a malformed customer code or an empty field; the passphrase
    itself never appears in an error.
    """
    assert_customer_code_format(customer_code)
    fields = {
        "shop_name": shop_name,
        "ssid": ssid,
        "recipient": recipient,
        "address": address,
        "requester": requester,
    }
    for name, value in fields.items():
        if not value.strip():
            raise RuleViolation(name, value, "the registration notice needs it; it is empty")
    if not passphrase:
        raise RuleViolation(
            "passphrase", None, "the business network has no passphrase stored",
            hint="set the business Wi-Fi first, then issue the notice",
        )  # fmt: skip
    from fleetd import notice_pdf

    return notice_pdf.build(
        customer_code=customer_code,
        shop_name=shop_name,
        ssid=ssid,
        passphrase=passphrase,
        recipient=recipient,
        postal_code=postal_code,
        address=address,
        issued_on=issued_on,
        requester=requester,
    )


def qr_widget(payload: str) -> QrCodeWidget:
    """The QR code of `payload` (error correction M: survives a crease in the paper)."""
    from fleetd import notice_pdf

    return notice_pdf.qr_widget(payload)
