"""Each rule of the service, at the boundary: what it accepts and what it refuses."""

from __future__ import annotations

from datetime import date

import pytest

from inventory.errors import RuleViolation
from inventory.rules import (
    UnitFacts,
    address_key,
    assert_access_point_has_no_line,
    assert_cancellation_date_fits_status,
    assert_child_has_parent_of_same_customer,
    assert_child_not_swapped_for_link_item,
    assert_customer_code_format,
    assert_customer_code_unchanged,
    assert_item_not_legacy_for_new_order,
    assert_only_child_has_parent,
    assert_passphrase,
    assert_role_unchanged,
    assert_serial_format,
    assert_serial_given_for_installed_unit,
    assert_ssid,
    assert_unit_password,
    assert_v6_possible,
    check_original_ssid,
    clean_item_code,
    clean_management_address,
    clean_phone,
    clean_postal_code,
    clean_tunnel,
    kana_key,
    parse_original_ssid,
)


@pytest.mark.parametrize("serial", ["US01BJH00022", "US01SP000000", "US01ABCDEFGH"])
def test_serial_is_us01_and_eight_upper_case_letters_or_digits(serial: str) -> None:
    assert_serial_format(serial)


@pytest.mark.parametrize(
    "serial", ["US01bjh00022", "US02BJH00022", "US01BJH0002", "US01BJH000222", "", "US01BJH-0022"]
)
def test_a_wrong_serial_is_refused_naming_field_value_and_rule(serial: str) -> None:
    with pytest.raises(RuleViolation) as caught:
        assert_serial_format(serial)
    assert (caught.value.field, caught.value.value) == ("serial", serial)
    assert "US01" in caught.value.rule and "12 characters" in caught.value.rule


# full-width digits are not a customer code either
@pytest.mark.parametrize("code", ["13830148", "1383014820", "13830148a", "", "１３８３０１４８２"])  # noqa: RUF001
def test_customer_code_is_nine_digits(code: str) -> None:
    assert_customer_code_format("138301482")
    with pytest.raises(RuleViolation, match="9 digits"):
        assert_customer_code_format(code)


def test_customer_code_never_changes() -> None:
    assert_customer_code_unchanged("138301482", "138301482")
    with pytest.raises(RuleViolation) as caught:
        assert_customer_code_unchanged("138301482", "138301483", what="unit US01BJH00022")
    assert caught.value.value == "138301483"
    assert "never changes" in caught.value.rule and "138301482" in caught.value.rule


def test_a_unit_keeps_its_role() -> None:
    assert_role_unchanged("US01BJH00022", "parent", "parent")
    with pytest.raises(RuleViolation, match="keeps its role"):
        assert_role_unchanged("US01BJH00022", "parent", "child")


PARENT = UnitFacts("US01BJH00022", "parent", "138301482")


def test_a_child_has_a_parent_unit_of_the_same_customer() -> None:
    assert_child_has_parent_of_same_customer("138301482", "US01BJH00022", PARENT)


@pytest.mark.parametrize(
    ("parent_serial", "parent", "expected"),
    [
        ("", None, "names its parent"),
        ("US01BJH00099", None, "no such unit"),
        ("US01APX00001", UnitFacts("US01APX00001", "ap", "138301482"), "is a ap"),
        ("US01BJH00023", UnitFacts("US01BJH00023", "child", "138301482"), "is a child"),
        ("US01BJH00022", PARENT._replace(customer_code="138301483"), "customer 138301483"),
    ],
)
def test_a_child_without_a_parent_of_its_customer_is_refused(
    parent_serial: str, parent: UnitFacts | None, expected: str
) -> None:
    with pytest.raises(RuleViolation, match=expected) as caught:
        assert_child_has_parent_of_same_customer("138301482", parent_serial, parent)
    assert caught.value.field == "parent_serial"


def test_only_a_child_names_a_parent() -> None:
    assert_only_child_has_parent("child", "US01BJH00022")
    assert_only_child_has_parent("parent", "")
    with pytest.raises(RuleViolation, match="only a child"):
        assert_only_child_has_parent("ap", "US01BJH00022")


def test_an_access_point_has_no_isp_line() -> None:
    assert_access_point_has_no_line("parent", "flets-east")
    assert_access_point_has_no_line("ap", "")
    with pytest.raises(RuleViolation, match="an access point has no ISP line"):
        assert_access_point_has_no_line("ap", "flets-east")
    with pytest.raises(RuleViolation, match="its parent's line serves it"):
        assert_access_point_has_no_line("child", "flets-west")


@pytest.mark.parametrize("code", ["9604070", "9604074"])
def test_legacy_items_take_no_new_orders(code: str) -> None:
    with pytest.raises(RuleViolation, match="no new orders") as caught:
        assert_item_not_legacy_for_new_order(code, "ordered")
    assert (caught.value.field, caught.value.value) == ("item_code", code)
    assert_item_not_legacy_for_new_order(code, "confirmed")  # an existing contract stays
    assert_item_not_legacy_for_new_order(code, "terminated")
    assert_item_not_legacy_for_new_order("9604076", "ordered")


def test_item_codes_are_the_services_own() -> None:
    assert clean_item_code("z201000") == "Z201000"
    with pytest.raises(RuleViolation, match="not a U-SPOT item code"):
        clean_item_code("9604099")


def test_a_child_is_never_swapped_for_a_link_item() -> None:
    assert_child_not_swapped_for_link_item("US01BJH00022", "parent", True)
    assert_child_not_swapped_for_link_item("US01APX00001", "ap", True)
    assert_child_not_swapped_for_link_item("US01BJH00023", "child", False)
    with pytest.raises(RuleViolation, match="never replaced by a link item") as caught:
        assert_child_not_swapped_for_link_item("US01BJH00023", "child", True)
    assert caught.value.field == "link_item"


@pytest.mark.parametrize(
    "ssid", ["A", "x" * 32, "カフェ木村", "USPOT_FREE_Wi-Fi", 'Cafe "Free" Wi-Fi']
)
def test_an_ssid_is_1_to_32_bytes_of_utf8(ssid: str) -> None:
    assert_ssid(ssid)


@pytest.mark.parametrize(
    ("ssid", "expected"),
    [
        ("", "0 bytes"),
        ("x" * 33, "33 bytes"),
        ("カフェ・ゲスト・ワイファイ", "39 bytes"),
        ("Cafe\tFree", "control"),
        ("Cafe\x7f", "control"),
    ],
)
def test_an_ssid_outside_the_rule_is_refused(ssid: str, expected: str) -> None:
    with pytest.raises(RuleViolation, match=expected) as caught:
        assert_ssid(ssid, field="guest_ssid")
    assert (caught.value.field, caught.value.value) == ("guest_ssid", ssid)


@pytest.mark.parametrize("passphrase", ["12345678", "x" * 63, "a b c d e", "0123456789abcdef" * 4])
def test_a_passphrase_is_8_to_63_printable_ascii_or_64_hex(passphrase: str) -> None:
    assert_passphrase(passphrase)


@pytest.mark.parametrize(
    "passphrase", ["Secret7", "x" * 64, "z" * 65, "パスワード12345678", "tab\there-pass"]
)
def test_a_passphrase_outside_the_rule_is_refused_and_never_echoed(passphrase: str) -> None:
    with pytest.raises(RuleViolation) as caught:
        assert_passphrase(passphrase, field="business_passphrase")
    assert caught.value.field == "business_passphrase"
    assert caught.value.value is None
    assert passphrase not in str(caught.value)
    assert "8 to 63 printable ASCII characters or 64 hex digits" in caught.value.rule


def test_a_unit_password_is_never_echoed() -> None:
    assert_unit_password("0d175938e9ccb2a0")
    with pytest.raises(RuleViolation) as caught:
        assert_unit_password("bad\npass")
    assert caught.value.value is None and "bad" not in str(caught.value)


def test_the_order_note_carries_the_original_ssid() -> None:
    assert parse_original_ssid("SSID'Cafe Kimura' 設置時に変更") == "Cafe Kimura"
    assert parse_original_ssid("新規 SSID＇カフェ木村＇") == "カフェ木村"  # noqa: RUF001
    assert parse_original_ssid("SSID’Salon’ (typed on a phone)") == "Salon"  # noqa: RUF001
    assert parse_original_ssid("no SSID here") is None


def test_an_original_ssid_over_15_characters_is_accepted_with_a_warning() -> None:
    assert check_original_ssid("CafeKimuraWiFi1") == []  # 15
    warnings = check_original_ssid("CafeKimura_Free_WiFi")  # 20
    assert len(warnings) == 1
    assert warnings[0].value == "CafeKimura_Free_WiFi"
    assert "20 characters" in warnings[0].note and "15 or fewer" in warnings[0].note
    with pytest.raises(RuleViolation, match="bytes"):
        check_original_ssid("x" * 33)


def test_a_unit_moved_by_the_customer_can_never_be_v6() -> None:
    assert_v6_possible("US01BJH00022", "parent", moved_by_customer=False)
    assert_v6_possible("US01BJH00022", "parent", moved_by_customer=False, order_state="complete")
    with pytest.raises(RuleViolation, match="never on V6") as caught:
        assert_v6_possible("US01BJH00022", "parent", moved_by_customer=True, order_state="complete")
    assert caught.value.field == "moved_by_customer"


def test_only_a_parent_on_a_complete_order_can_be_v6() -> None:
    with pytest.raises(RuleViolation, match="only a parent"):
        assert_v6_possible("US01BJH00023", "child", moved_by_customer=False)
    with pytest.raises(RuleViolation, match="not complete"):
        assert_v6_possible("US01BJH00022", "parent", moved_by_customer=False, order_state="ng")


def test_a_cancellation_date_fits_the_status() -> None:
    assert_cancellation_date_fits_status("terminated", date(2025, 3, 31))
    assert_cancellation_date_fits_status("confirmed", date(2025, 3, 31))  # due, not yet
    assert_cancellation_date_fits_status("confirmed", None)
    with pytest.raises(RuleViolation, match="has its cancellation effective date"):
        assert_cancellation_date_fits_status("terminated", None)
    with pytest.raises(RuleViolation, match="not a cancellation"):
        assert_cancellation_date_fits_status("cancelled", date(2025, 3, 31))


def test_an_installed_equipment_item_names_its_serial() -> None:
    assert_serial_given_for_installed_unit("9604076", "ordered", "")
    assert_serial_given_for_installed_unit("Z201000", "confirmed", "")
    with pytest.raises(RuleViolation, match="names its unit's serial"):
        assert_serial_given_for_installed_unit("9604073", "confirmed", "")


def test_a_tunnel_is_checked_and_stored_in_normal_form() -> None:
    tunnel = clean_tunnel(
        "map-e",
        {
            "br": "2001:DB8:3E0:0::1",
            "rule-ipv6-prefix": "2001:db8:300::/40",
            "rule-ipv4-prefix": "203.0.3.0/255.255.255.0",
            "ea-length": "016",
        },
    )
    assert tunnel.as_dict() == {
        "type": "map-e",
        "br": "2001:db8:3e0::1",
        "rule-ipv6-prefix": "2001:db8:300::/40",
        "rule-ipv4-prefix": "203.0.3.0/24",
        "ea-length": "16",
    }
    assert clean_tunnel("ds-lite", {"aftr": "AFTR.Example.jp"}).params == {
        "aftr": "aftr.example.jp"
    }


@pytest.mark.parametrize(
    ("kind", "params", "field", "expected"),
    [
        ("gre", {}, "tunnel.type", "ds-lite, map-e or ipip"),
        ("ds-lite", {}, "tunnel.aftr", "needs aftr"),
        ("ds-lite", {"aftr": "10.0.0.1"}, "tunnel.aftr", "IPv6 address or a host name"),
        ("ds-lite", {"aftr": "2001:db8::1", "br": "2001:db8::2"}, "tunnel.br", "not a parameter"),
        (
            "map-e",
            {
                "br": "2001:db8::1",
                "rule-ipv6-prefix": "2001:db8:101::/40",
                "rule-ipv4-prefix": "203.0.1.0/24",
                "ea-length": "16",
            },
            "tunnel.rule-ipv6-prefix",
            "no bits after its length",
        ),
        (
            "ipip",
            {"local": "2001:db8::1", "remote": "2001:db8::2", "ipv4-address": "300.1.1.1"},
            "tunnel.ipv4-address",
            "dotted decimal",
        ),
    ],
)
def test_a_broken_tunnel_is_refused(
    kind: str, params: dict[str, str], field: str, expected: str
) -> None:
    with pytest.raises(RuleViolation, match=expected) as caught:
        clean_tunnel(kind, params)
    assert caught.value.field == field


def test_phone_numbers_are_searched_by_their_digits() -> None:
    assert clean_phone("03-1234-5678") == "0312345678"
    assert clean_phone("０９０ー１２３４ー５６７８") == "09012345678"
    assert clean_phone("(045) 123-4567") == "0451234567"
    with pytest.raises(RuleViolation, match="10 or 11 digits"):
        clean_phone("1234-5678")


def test_kana_and_addresses_are_searched_in_one_form() -> None:
    assert (
        kana_key("ｶﾌｪ ｷﾑﾗ")
        == kana_key("かふぇ きむら")
        == kana_key("カフェキムラ")
        == "カフェキムラ"
    )
    assert address_key("東京都港区　虎ノ門１－２") == "東京都港区虎ノ門1-2"  # noqa: RUF001


def test_postal_codes_and_management_addresses() -> None:
    assert clean_postal_code("〒1050001", field="install_postal_code") == "105-0001"
    with pytest.raises(RuleViolation, match="7 digits"):
        clean_postal_code("105-001", field="install_postal_code")
    assert clean_management_address("127.20.0.1") == "127.20.0.1"
    assert clean_management_address("Unit-1.Example.JP") == "unit-1.example.jp"
    with pytest.raises(RuleViolation, match="not an IP address"):
        clean_management_address("300.1.1.1")
