"""The registration notice's page (`fleetd.notice`), laid out with reportlab.

Imported only when a notice is rendered: reportlab (with Pillow) is several MB that a daemon
which never prints a notice does not need to hold.
"""

from __future__ import annotations

import functools
import io
from datetime import date

from reportlab.graphics.barcode.qr import QrCodeWidget
from reportlab.graphics.shapes import Drawing
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.platypus import Flowable, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle
from reportlab.platypus.flowables import HRFlowable

from fleetd.notice import SENDER, wifi_qr_payload

JAPANESE = "HeiseiKakuGo-W5"
MONO = "Courier-Bold"
QR_SIZE = 42 * mm


def build(
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
    """The notice as a one-page A4 PDF, from fields `fleetd.notice.render_notice` checked."""
    _register_fonts()
    out = io.BytesIO()
    doc = SimpleDocTemplate(
        out,
        pagesize=A4,
        leftMargin=22 * mm,
        rightMargin=22 * mm,
        topMargin=20 * mm,
        bottomMargin=18 * mm,
        title="登録通知書",
        author=SENDER,
        subject=f"お客様コード {customer_code}",
        creator="fleetd",
        invariant=True,  # same input, same bytes: no time stamp or random id inside
    )
    story: list[Flowable] = [
        *_envelope(recipient, postal_code, address, issued_on),
        Spacer(1, 10 * mm),
        Paragraph("登録通知書", _STYLES["title"]),
        Spacer(1, 6 * mm),
        Paragraph(
            "平素より U-SPOT をご利用いただき、誠にありがとうございます。"
            "ご依頼により、業務用 Wi-Fi の登録内容を下記のとおりお知らせいたします。",
            _STYLES["body"],
        ),
        Spacer(1, 6 * mm),
        _details(customer_code, shop_name, address, ssid, passphrase),
        Spacer(1, 8 * mm),
        _qr_block(wifi_qr_payload(ssid, passphrase)),
        Spacer(1, 8 * mm),
        HRFlowable(width="100%", thickness=0.5, color=colors.grey),
        Spacer(1, 3 * mm),
        *[Paragraph(f"・{line}", _STYLES["note"]) for line in _notes(requester)],
    ]
    doc.build(story)
    return out.getvalue()


# ----- pieces of the page ----------------------------------------------------------------------
@functools.cache
def _register_fonts() -> None:
    # Process-wide in reportlab; once is enough.
    pdfmetrics.registerFont(UnicodeCIDFont(JAPANESE))


_STYLES = {
    "title": ParagraphStyle("title", fontName=JAPANESE, fontSize=20, leading=26, alignment=1),
    "body": ParagraphStyle("body", fontName=JAPANESE, fontSize=10.5, leading=17, wordWrap="CJK"),
    "address": ParagraphStyle("address", fontName=JAPANESE, fontSize=11, leading=16,
                              wordWrap="CJK"),
    "name": ParagraphStyle("name", fontName=JAPANESE, fontSize=14, leading=20, wordWrap="CJK"),
    "date": ParagraphStyle("date", fontName=JAPANESE, fontSize=10, leading=14, alignment=2),
    "label": ParagraphStyle("label", fontName=JAPANESE, fontSize=10.5, leading=15),
    "value": ParagraphStyle("value", fontName=JAPANESE, fontSize=12, leading=17, wordWrap="CJK"),
    "secret": ParagraphStyle("secret", fontName=MONO, fontSize=15, leading=20),
    "caption": ParagraphStyle("caption", fontName=JAPANESE, fontSize=9.5, leading=14,
                              wordWrap="CJK"),
    "note": ParagraphStyle("note", fontName=JAPANESE, fontSize=9, leading=14, wordWrap="CJK"),
}  # fmt: skip


def _text(value: str) -> str:
    """`value` as Paragraph markup (which is XML-like: <, > and & must be escaped)."""
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _typed(value: str) -> Paragraph:
    """A value the customer types by hand: monospaced when it is ASCII (any Japanese
    character needs the Japanese font, which has no monospaced Latin face here)."""
    style = _STYLES["secret"] if value.isascii() else _STYLES["value"]
    return Paragraph(_text(value), style)


def _japanese_date(day: date) -> str:
    return f"{day.year}年{day.month}月{day.day}日"


def _envelope(recipient: str, postal_code: str, address: str, issued_on: date) -> list[Flowable]:
    postal = postal_code.strip()
    if postal and not postal.startswith("〒"):
        postal = f"〒{postal}"
    lines = [Paragraph(_text(postal), _STYLES["address"])] if postal else []
    return [
        Paragraph(f"発行日　{_japanese_date(issued_on)}", _STYLES["date"]),
        Spacer(1, 4 * mm),
        *lines,
        Paragraph(_text(address), _STYLES["address"]),
        Spacer(1, 2 * mm),
        Paragraph(f"{_text(recipient)}　様", _STYLES["name"]),
        Spacer(1, 3 * mm),
        Paragraph(SENDER, _STYLES["date"]),
    ]


def _details(customer_code: str, shop_name: str, address: str, ssid: str, passphrase: str) -> Table:
    rows: list[tuple[str, Paragraph]] = [
        ("お客様コード", Paragraph(customer_code, _STYLES["value"])),
        ("店舗名", Paragraph(_text(shop_name), _STYLES["value"])),
        ("住所", Paragraph(_text(address), _STYLES["value"])),
        ("業務用SSID", _typed(ssid)),
        ("パスワード", _typed(passphrase)),
    ]
    table = Table(
        [[Paragraph(label, _STYLES["label"]), value] for label, value in rows],
        colWidths=[38 * mm, None],
    )
    table.setStyle(
        TableStyle(
            [
                ("GRID", (0, 0), (-1, -1), 0.6, colors.black),
                ("BACKGROUND", (0, 0), (0, -1), colors.HexColor("#EEEEEE")),
                ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
                ("TOPPADDING", (0, 0), (-1, -1), 5),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 6),
                ("LEFTPADDING", (0, 0), (-1, -1), 6),
            ]
        )
    )
    return table


def qr_widget(payload: str) -> QrCodeWidget:
    """The QR code of `payload` (error correction M: survives a crease in the paper)."""
    return QrCodeWidget(payload, barLevel="M", barWidth=QR_SIZE, barHeight=QR_SIZE, barBorder=4)


def _qr_block(payload: str) -> Table:
    drawing = Drawing(QR_SIZE, QR_SIZE)
    drawing.add(qr_widget(payload))
    caption = Paragraph(
        "スマートフォンのカメラでこのコードを読み取ると、業務用 Wi-Fi に接続できます。"
        "読み取れない場合は、上記の業務用SSIDを選び、パスワードを入力してください。",
        _STYLES["caption"],
    )
    table = Table([[drawing, caption]], colWidths=[QR_SIZE + 6 * mm, None])
    table.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "MIDDLE")]))
    return table


def _notes(requester: str) -> list[str]:
    return [
        "業務用 Wi-Fi は店舗の業務用端末専用です。"
        "お客様（来店客）には来店客向けSSIDをご案内ください。",
        "パスワードはお電話やメールではお伝えできません。本書は大切に保管してください。",
        "本書はご登録の住所（設置場所・ご契約者・ご請求先）にのみ郵送しています。",
        f"ご依頼者：{_text(requester)}",
    ]
