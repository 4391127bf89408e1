from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from haulmer_onboarding.errors import RutError
from haulmer_onboarding.rut import Rut, check_digit, dotted

numbers = st.integers(min_value=1, max_value=999_999_999)


@pytest.mark.parametrize(
    ("number", "digit"),
    [
        (76123456, "0"),
        (12345678, "5"),
        (96928180, "5"),
        (60803000, "K"),
        (66666666, "6"),
        (88888888, "8"),
        (11111111, "1"),
        (1, "9"),
    ],
)
def test_check_digit_of_known_ruts(number: int, digit: str) -> None:
    assert check_digit(number) == digit


def test_check_digit_refuses_negative_numbers() -> None:
    with pytest.raises(ValueError, match="negative"):
        check_digit(-1)


@pytest.mark.parametrize(
    "text",
    [
        "76.123.456-0",
        "76123456-0",
        "761234560",
        " 76.123.456-0 ",
        "76 123 456 - 0",
        "\t76123456-0\n",
        "76123456–0",
        "0076123456-0",
        # Full-width digits and hyphen, as some phone keyboards type them.
        "７６１２３４５６－０",
        "７６.１２３.４５６-0",
    ],
)
def test_parse_accepts_how_people_write_it(text: str) -> None:
    assert Rut.parse(text) == Rut(76123456, "0")


@pytest.mark.parametrize(
    "text", ["60803000-k", "60.803.000-K", "60803000k", "60803000-ｋ", "60803000Ｋ"]
)
def test_parse_accepts_k_in_either_case(text: str) -> None:
    rut = Rut.parse(text)
    assert rut.dv == "K"
    assert str(rut) == "60803000-K"


def test_canonical_and_formatted_forms() -> None:
    rut = Rut.parse("761234560")
    assert str(rut) == "76123456-0"
    assert rut.formatted() == "76.123.456-0"
    assert Rut.from_number(1).formatted() == "1-9"
    assert Rut.from_number(123456).formatted() == "123.456-0"


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_parse_empty(text: str) -> None:
    with pytest.raises(RutError) as caught:
        Rut.parse(text)
    assert caught.value.code == "rut_empty"
    assert caught.value.field == "rut"
    assert caught.value.message == "Ingresa el RUT."


@pytest.mark.parametrize(
    "text",
    [
        "abc",
        "76.123.456-X",
        "76123456-",
        "-0",
        "K",
        "76123456-00",
        "7.6123.456-0",
        "76,123,456-0",
        "1234567890-1",
        "0-0",
        "٧٦١٢٣٤٥٦-0",
        "76123456/0",
    ],
)
def test_parse_refuses_what_is_not_a_rut(text: str) -> None:
    with pytest.raises(RutError) as caught:
        Rut.parse(text)
    assert caught.value.code == "rut_format"
    assert "12.345.678-5" in caught.value.message


def test_parse_says_which_check_digit_was_expected() -> None:
    with pytest.raises(RutError) as caught:
        Rut.parse("76.123.456-1")
    assert caught.value.code == "rut_check_digit"
    assert caught.value.field == "rut"
    assert caught.value.message == (
        "El dígito verificador no corresponde: para 76.123.456 debería ser 0."
    )


def test_rut_errors_are_value_errors() -> None:
    with pytest.raises(ValueError, match="dígito verificador"):
        Rut.parse("12345678-9")


def test_building_a_rut_checks_it() -> None:
    assert Rut(76123456, "0") == Rut.parse("76123456-0")
    assert Rut(60803000, "k").dv == "K"
    with pytest.raises(RutError) as caught:
        Rut(76123456, "1")
    assert caught.value.code == "rut_check_digit"
    with pytest.raises(RutError) as caught:
        Rut.from_number(0)
    assert caught.value.code == "rut_format"
    with pytest.raises(TypeError):
        Rut(True, "9")


def test_ruts_are_values() -> None:
    assert {Rut.parse("76.123.456-0"), Rut.parse("761234560")} == {Rut(76123456, "0")}
    with pytest.raises(AttributeError):
        Rut.parse("76123456-0").number = 1  # type: ignore[misc]


@given(numbers)
def test_round_trip_through_the_canonical_form(number: int) -> None:
    rut = Rut.from_number(number)
    assert Rut.parse(str(rut)) == rut


@given(numbers)
def test_round_trip_through_the_formatted_form(number: int) -> None:
    rut = Rut.from_number(number)
    assert Rut.parse(rut.formatted()) == rut


@given(numbers)
def test_round_trip_in_lowercase_and_without_hyphen(number: int) -> None:
    rut = Rut.from_number(number)
    assert Rut.parse(str(rut).lower()) == rut
    assert Rut.parse(str(rut).replace("-", "")) == rut


@given(numbers, st.data())
def test_round_trip_with_spaces_anywhere(number: int, data: st.DataObject) -> None:
    rut = Rut.from_number(number)
    text = rut.formatted()
    cut = data.draw(st.integers(min_value=0, max_value=len(text)))
    assert Rut.parse(f"  {text[:cut]} {text[cut:]}  ") == rut


@given(numbers)
def test_every_wrong_check_digit_is_refused(number: int) -> None:
    right = check_digit(number)
    for digit in "0123456789K":
        if digit == right:
            continue
        with pytest.raises(RutError) as caught:
            Rut.parse(f"{number}-{digit}")
        assert caught.value.code == "rut_check_digit"
        assert f"debería ser {right}." in caught.value.message


@pytest.mark.parametrize(
    ("stored", "shown"),
    [
        ("76543210-3", "76.543.210-3"),
        ("76.543.210-3", "76.543.210-3"),
        ("60803000k", "60.803.000-K"),
        ("1-9", "1-9"),
        ("76543210-4", "76543210-4"),  # not a RUT: shown as it is
        ("", ""),
        (None, ""),
    ],
)
def test_dotted_shows_a_rut_as_customers_read_it(
    stored: str | None, shown: str
) -> None:
    assert dotted(stored) == shown


def test_a_rut_typed_without_its_check_digit_gets_a_hint() -> None:
    with pytest.raises(RutError) as caught:
        Rut.parse("76086428")
    assert caught.value.code == "rut_check_digit"
    assert caught.value.message == (
        "El dígito verificador no corresponde: para 7.608.642 debería ser 7. "
        "Si escribiste el RUT sin dígito verificador, agrégalo después del guion."
    )
    # With the hyphen typed, the check digit is there: no hint.
    with pytest.raises(RutError) as typed:
        Rut.parse("7.608.642-8")
    assert "sin dígito verificador" not in typed.value.message


@pytest.mark.parametrize(
    "text",
    ["\u200b76.123.456-0", "76123456-0\u200b", "7612\u20603456-0", "\ufeff761234560"],
)
def test_invisible_format_characters_are_left_out(text: str) -> None:
    assert str(Rut.parse(text)) == "76123456-0"


def test_none_is_an_empty_rut() -> None:
    with pytest.raises(RutError) as caught:
        Rut.parse(None)
    assert caught.value.code == "rut_empty"


@pytest.mark.parametrize("value", [76123456, b"76123456-0", 7.6])
def test_a_value_that_is_not_text_is_a_type_error(value: object) -> None:
    with pytest.raises(TypeError, match=r"Rut\.parse takes the RUT as a str"):
        Rut.parse(value)  # type: ignore[arg-type]
