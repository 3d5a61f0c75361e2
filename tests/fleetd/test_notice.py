"""The registration notice: a printable A4 PDF in Japanese, and the Wi-Fi QR code on it."""

from __future__ import annotations

import io
from datetime import date
from typing import Any

import pytest
import zxingcpp
from PIL import Image
from pypdf import PdfReader

from fleetd.notice import qr_widget, render_notice, wifi_escape, wifi_qr_payload
from inventory.errors import RuleViolation

A4_POINTS = (595.3, 841.9)
PASSPHRASE = "Canary-Pass-123"


def notice(**changes: Any) -> bytes:
    values: dict[str, Any] = {
        "customer_code": "138301482",
        "shop_name": "カフェ・ド・ルナ 渋谷店",
        "ssid": "LUNA-STAFF",
        "passphrase": PASSPHRASE,
        "recipient": "山田 太郎",
        "postal_code": "150-0002",
        "address": "東京都渋谷区渋谷2-1-1 ルナビル1F",
        "issued_on": date(2026, 11, 24),
        "requester": "山田 太郎（オーナー）",
    }
    return render_notice(**(values | changes))


def text_of(pdf: bytes) -> tuple[int, tuple[float, float], str]:
    reader = PdfReader(io.BytesIO(pdf))
    page = reader.pages[0]
    size = (round(float(page.mediabox.width), 1), round(float(page.mediabox.height), 1))
    return len(reader.pages), size, page.extract_text()


def decode_qr(payload: str) -> list[str]:
    """Read the notice's QR code the way a phone does: draw its modules, decode the image."""
    qr = qr_widget(payload).qr
    qr.make()
    count, scale, quiet = qr.getModuleCount(), 4, 4
    side = (count + 2 * quiet) * scale
    image = Image.new("L", (side, side), 255)
    for row in range(count):
        for col in range(count):
            if qr.isDark(row, col):
                x, y = (col + quiet) * scale, (row + quiet) * scale
                image.paste(0, (x, y, x + scale, y + scale))
    return [found.text for found in zxingcpp.read_barcodes(image)]


def test_the_notice_is_one_a4_page_with_the_shop_its_network_and_japanese_labels() -> None:
    pages, size, text = text_of(notice())
    assert pages == 1
    assert size == A4_POINTS
    for expected in (
        "登録通知書",
        "お客様コード",
        "138301482",
        "業務用SSID",
        "LUNA-STAFF",
        "パスワード",
        PASSPHRASE,
        "カフェ・ド・ルナ 渋谷店",
        "東京都渋谷区渋谷2-1-1 ルナビル1F",
        "〒150-0002",
        "山田 太郎 様",
        "2026年11月24日",
        "ご依頼者：山田 太郎（オーナー）",
    ):
        assert expected in text, expected


def test_markup_characters_in_names_are_printed_as_typed() -> None:
    _, _, text = text_of(notice(shop_name="Bar <Tom & Jerry>", ssid="Tom&Jerry<staff>"))
    assert "Bar <Tom & Jerry>" in text
    assert "Tom&Jerry<staff>" in text


def test_the_same_request_gives_the_same_bytes() -> None:
    # no time stamp or random id inside: a reissue can be compared with the first print
    assert notice() == notice()


@pytest.mark.parametrize(
    ("field", "value"),
    [("customer_code", "12345"), ("shop_name", " "), ("address", ""), ("requester", "")],
)
def test_a_missing_or_malformed_field_is_refused_by_name(field: str, value: str) -> None:
    with pytest.raises(RuleViolation) as refused:
        notice(**{field: value})
    assert refused.value.field == field


def test_no_passphrase_is_refused_with_what_to_do() -> None:
    with pytest.raises(RuleViolation) as refused:
        notice(passphrase="")
    assert refused.value.field == "passphrase"
    assert "set the business Wi-Fi first" in str(refused.value)


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("plain", "plain"),
        ("a;b", r"a\;b"),
        ("a,b", r"a\,b"),
        ("a:b", r"a\:b"),
        ('say "hi"', r"say \"hi\""),
        ("back\\slash", r"back\\slash"),
        ('\\;,:"', r"\\\;\,\:\""),
        ("カフェ", "カフェ"),
    ],
)
def test_wifi_escape_backslashes_the_special_characters(raw: str, escaped: str) -> None:
    assert wifi_escape(raw) == escaped


def test_wifi_payload_escapes_ssid_and_passphrase() -> None:
    assert wifi_qr_payload("Cafe;Staff", 'p:a,s"s\\') == (
        r"WIFI:T:WPA;S:Cafe\;Staff;P:p\:a\,s\"s\\;;"
    )


def test_the_qr_code_reads_back_as_the_wifi_payload() -> None:
    payload = wifi_qr_payload("ルナ;Staff", 'Canary:Pass,"1\\')
    assert decode_qr(payload) == [payload]
