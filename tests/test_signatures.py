from __future__ import annotations

import contextlib
import io
import json
import struct
import zipfile
import zlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from asn1crypto import pkcs12 as asn1_pkcs12
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from haulmer_onboarding.errors import SignatureError
from haulmer_onboarding.rut import Rut
from haulmer_onboarding.signatures import (
    LoadedSignature,
    SignatureInfo,
    SignatureSealer,
    load_signature,
)
from haulmer_onboarding.testing.signatures import (
    AUTHORITY_NAME,
    make_certificate_der,
    make_certificate_pem,
    make_pkcs12,
    require_openssl,
)

PASSWORD = "firma-1234"
NOT_BEFORE = datetime(2025, 1, 15, 12, 0, tzinfo=UTC)
NOT_AFTER = datetime(2027, 1, 15, 12, 0, tzinfo=UTC)
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def pfx(**changes: object) -> bytes:
    options: dict[str, object] = {"not_before": NOT_BEFORE, "not_after": NOT_AFTER}
    options.update(changes)
    return make_pkcs12(**options)  # type: ignore[arg-type]


def load(data: bytes, password: str = PASSWORD, **options: object) -> LoadedSignature:
    return load_signature(data, password, now=NOW, **options)  # type: ignore[arg-type]


def refused(data: bytes, password: str = PASSWORD, **options: object) -> SignatureError:
    with pytest.raises(SignatureError) as caught:
        load(data, password, **options)
    return caught.value


@pytest.fixture(scope="module")
def valid() -> bytes:
    return pfx()


# --- Files that load ---------------------------------------------------------


def test_a_good_file_loads_with_its_facts(valid: bytes) -> None:
    loaded = load(valid)
    info = loaded.info

    assert info.holder_name == "María José Pérez Soto"
    assert info.holder_rut == Rut.parse("12.345.678-5")
    assert info.issuer == AUTHORITY_NAME
    assert info.not_before == NOT_BEFORE
    assert info.not_after == NOT_AFTER
    assert info.serial == f"{loaded.certificate.serial_number:X}"
    assert (
        info.fingerprint_sha256 == loaded.certificate.fingerprint(hashes.SHA256()).hex()
    )
    assert info.warnings == ()


def test_the_key_is_the_certificate_s_own(valid: bytes) -> None:
    loaded = load(valid)
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    assert loaded.private_key.public_key().public_bytes(
        der, public
    ) == loaded.certificate.public_key().public_bytes(der, public)


def test_the_key_stays_out_of_repr(valid: bytes) -> None:
    loaded = load(valid)
    assert "private_key" not in repr(loaded)
    assert "RSAPrivateKey" not in repr(loaded)


@pytest.mark.parametrize("encryption", ["aes", "3des", "rc2"])
def test_every_encryption_loads(encryption: str) -> None:
    if encryption == "rc2":
        require_openssl()  # RC2-40 files are written with the openssl command
    loaded = load(pfx(encryption=encryption))
    assert loaded.info.holder_rut == Rut(12345678, "5")


def test_the_expected_rut_passes(valid: bytes) -> None:
    loaded = load(valid, expected_rut=Rut.parse("12345678-5"))
    assert loaded.info.holder_rut == Rut(12345678, "5")


def test_a_password_with_accents() -> None:
    loaded = load(pfx(password="contraseña Ñandú"), "contraseña Ñandú")
    assert loaded.info.holder_rut is not None


def test_a_file_written_by_old_openssl_with_an_accented_password() -> None:
    # OpenSSL before 1.1.0 read each byte of the UTF-8 password as a letter.
    as_old_openssl_read_it = "contraseña".encode().decode("latin-1")
    data = pfx(password=as_old_openssl_read_it)
    assert load(data, "contraseña").info.holder_rut is not None


def test_an_empty_password() -> None:
    require_openssl()  # cryptography writes no file without a password
    assert load(pfx(password=""), "").info.holder_rut is not None


@pytest.mark.filterwarnings("error")
def test_a_ber_file_with_indefinite_length(
    valid: bytes, capfd: pytest.CaptureFixture[str]
) -> None:
    # Under -W error too: cryptography's "falling back to BER" warning never
    # reaches the customer as a damaged file, nor stderr.
    assert valid[:2] == b"\x30\x82"
    ber = b"\x30\x80" + valid[4:] + b"\x00\x00"
    assert load(ber).info == load(valid).info
    assert load(ber + b"\n").info == load(valid).info
    assert refused(ber, "otra").code == "signature_wrong_password"
    assert refused(ber[:-1]).code == "signature_corrupt"
    assert "BER" not in capfd.readouterr().err


def _two_keys(first: bytes, second: bytes) -> bytes:
    parts = [
        part
        for data in (first, second)
        for part in asn1_pkcs12.Pfx.load(data).authenticated_safe
    ]
    safe = asn1_pkcs12.AuthenticatedSafe(parts)
    content = {"content_type": "data", "content": safe.dump()}
    both: bytes = asn1_pkcs12.Pfx({"version": "v3", "auth_safe": content}).dump()
    return both


@pytest.mark.parametrize("expired_first", [True, False])
def test_a_file_with_two_keys_is_refused(expired_first: bool, valid: bytes) -> None:
    expired = pfx(not_before=NOW - timedelta(days=400), not_after=NOW - timedelta(1))
    pair = (expired, valid) if expired_first else (valid, expired)
    error = refused(_two_keys(*pair))
    assert error.code == "signature_several_keys"
    assert error.field == "signature"
    assert "más de una clave privada" in error.message


def test_an_expiring_signature_loads_with_a_warning() -> None:
    loaded = load(pfx(not_after=NOW + timedelta(days=10, hours=1)))
    assert loaded.info.warnings == (
        "La firma electrónica vence el 11-06-2025, en 10 días. Renuévala a "
        "tiempo con tu entidad certificadora para no interrumpir la emisión "
        "de documentos.",
    )


def test_the_warning_window_is_configurable() -> None:
    data = pfx(not_after=NOW + timedelta(days=40))
    assert load(data).info.warnings == ()
    assert len(load(data, expiry_warning_days=60).info.warnings) == 1
    last_hours = load(pfx(not_after=NOW + timedelta(hours=5))).info.warnings
    assert "vence el 01-06-2025, hoy." in last_hours[0]


def test_the_expiry_warning_counts_calendar_days_in_chile() -> None:
    # A minute short of ten days: still ten days away on Chile's calendar.
    loaded = load(pfx(not_after=NOW + timedelta(days=10, minutes=-1)))
    assert "vence el 11-06-2025, en 10 días." in loaded.info.warnings[0]
    # 02:00 UTC on the 11th is still the 10th in Santiago (UTC-4 in June).
    late = load(pfx(not_after=datetime(2025, 6, 11, 2, 0, tzinfo=UTC)))
    assert "vence el 10-06-2025, en 9 días." in late.info.warnings[0]
    tomorrow = load(pfx(not_after=datetime(2025, 6, 2, 3, 0, tzinfo=UTC)))
    assert "vence el 01-06-2025, hoy." in tomorrow.info.warnings[0]
    assert "mañana" in load(pfx(not_after=NOW + timedelta(days=1))).info.warnings[0]


def test_expired_dates_are_chile_s_calendar_days() -> None:
    error = refused(pfx(not_after=datetime(2025, 5, 1, 2, 0, tzinfo=UTC)))
    assert error.code == "signature_expired"
    assert "venció el 30-04-2025" in error.message


# --- Every refusal -----------------------------------------------------------


def test_empty() -> None:
    error = refused(b"")
    assert error.code == "signature_empty"
    assert error.field == "signature"


def test_too_large(valid: bytes) -> None:
    error = refused(valid, max_bytes=len(valid) - 1)
    assert error.code == "signature_too_large"
    error = refused(b"\x00" * (3 * 1024 * 1024))
    assert error.code == "signature_too_large"
    assert "pesa 3 MB; el máximo es 1 MB." in error.message


def test_too_large_just_over_the_limit_says_two_different_sizes() -> None:
    error = refused(b"0" * 1_100_000, "x")
    assert error.code == "signature_too_large"
    assert "El archivo pesa 1,05 MB; el máximo es 1 MB." in error.message
    error = refused(b"0" * 1_048_577, "x")
    assert "pesa 1.048.577 bytes; el máximo es 1.048.576 bytes." in error.message
    error = refused(b"0" * 600_000, "x", max_bytes=500_000)
    assert "pesa 585,9 KB; el máximo es 488,3 KB." in error.message


def _png() -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00")
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", pixels)
        + chunk(b"IEND", b"")
    )


def _zip(valid: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("firma.pfx", valid)
    return buffer.getvalue()


def _pkcs8_key() -> bytes:
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@pytest.mark.parametrize(
    "kind", ["cer", "pem", "zip", "png", "pdf", "key", "text", "zero"]
)
def test_not_a_pkcs12_file(kind: str, valid: bytes) -> None:
    makers: dict[str, Callable[[], bytes]] = {
        "cer": make_certificate_der,
        "pem": make_certificate_pem,
        "zip": lambda: _zip(valid),
        "png": _png,
        "pdf": lambda: b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\n%%EOF\n",
        "key": _pkcs8_key,
        "text": lambda: "0 firma electrónica\n".encode(),
        "zero": lambda: b"\x00" * 100,
    }
    error = refused(makers[kind]())
    assert error.code == "signature_not_pkcs12"
    assert error.field == "signature"
    assert ".pfx o .p12" in error.message


def test_not_a_pkcs12_file_says_what_it_looks_like(valid: bytes) -> None:
    assert "(PEM)" in refused(make_certificate_pem()).message
    assert "Descomprímelo" in refused(_zip(valid)).message
    assert ".cer" in refused(make_certificate_der()).message


@pytest.mark.parametrize("keep", [1, 2, 5, 12, 30, 100, -100, -1])
def test_truncated_is_corrupt(keep: int, valid: bytes) -> None:
    assert refused(valid[:keep]).code == "signature_corrupt"


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("tail", [b"\n", b"\x00", b"\x00\x00\x00", b"\r\n\r\n"])
def test_trailing_bytes_after_the_file_are_left_out(tail: bytes, valid: bytes) -> None:
    # OpenSSL and cryptography open these; a mail client or a copy adds them.
    assert load(valid + tail).info == load(valid).info


def test_a_broken_inner_length_is_corrupt(valid: bytes) -> None:
    # The ContentInfo after "30 82 LL LL 02 01 03" claims one byte more.
    assert valid[7:9] == b"\x30\x82"
    length = int.from_bytes(valid[9:11], "big") + 1
    broken = valid[:9] + length.to_bytes(2, "big") + valid[11:]
    assert refused(broken).code == "signature_corrupt"


def test_wrong_password(valid: bytes) -> None:
    error = refused(valid, "firma-12345")
    assert error.code == "signature_wrong_password"
    assert error.field == "signature_password"
    assert "no es posible recuperarla" in error.message
    assert "comprar una firma electrónica nueva" in error.message
    assert refused(valid, "x" * 5000).code == "signature_wrong_password"
    assert refused(valid, "\ud800").code == "signature_wrong_password"


@pytest.mark.parametrize("password", ["firma\x00123", "firma-1234\x00", "\x00"])
def test_a_password_with_nul_is_wrong_and_stays_off_stderr(
    password: str, valid: bytes, capfd: pytest.CaptureFixture[str]
) -> None:
    error = refused(valid, password)
    assert error.code == "signature_wrong_password"
    assert error.field == "signature_password"
    err = capfd.readouterr().err
    assert "firma" not in err
    assert "panicked" not in err


@pytest.mark.parametrize("password", ["\udc80", "firma-1234\ud800", "ñ\udfff"])
def test_a_password_with_a_lone_surrogate_is_wrong(password: str, valid: bytes) -> None:
    assert refused(valid, password).code == "signature_wrong_password"


def test_no_password_asks_for_it(valid: bytes) -> None:
    error = refused(valid, "")
    assert error.code == "signature_password_missing"
    assert error.field == "signature_password"
    assert error.message == "Ingresa la contraseña de tu firma electrónica."


def test_wrong_accented_password() -> None:
    data = pfx(password="contraseña")
    assert refused(data, "contrasena").code == "signature_wrong_password"


def test_no_key() -> None:
    error = refused(pfx(include_key=False))
    assert error.code == "signature_no_key"
    assert "clave privada" in error.message


def test_no_certificate() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    protection = serialization.BestAvailableEncryption(PASSWORD.encode())
    data = pkcs12.serialize_key_and_certificates(b"k", key, None, None, protection)
    assert refused(data).code == "signature_no_certificate"


def _key_ciphertext(data: bytes) -> bytes:
    for part in asn1_pkcs12.Pfx.load(data).authenticated_safe:
        if part["content_type"].native == "data":
            bags = asn1_pkcs12.SafeContents.load(part["content"].native)
            return bytes(bags[0]["bag_value"]["encrypted_data"].native)
    raise AssertionError("no key bag")


@pytest.mark.parametrize("encryption", ["aes", "3des", "rc2"])
def test_damaged_inside_with_the_right_password(encryption: str) -> None:
    if encryption == "rc2":
        require_openssl()
    data = pfx(encryption=encryption)
    at = data.index(_key_ciphertext(data)) + 100
    damaged = data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :]
    error = refused(damaged)
    assert error.code == "signature_damaged"
    assert "La contraseña es correcta" in error.message
    assert refused(damaged, "otra").code == "signature_wrong_password"


def test_key_mismatch() -> None:
    assert refused(pfx(mismatched_key=True)).code == "signature_key_mismatch"


def test_expired() -> None:
    data = pfx(
        not_before=datetime(2023, 3, 1, 12, 0, tzinfo=UTC),
        not_after=datetime(2025, 2, 28, 23, 0, tzinfo=UTC),
    )
    error = refused(data)
    assert error.code == "signature_expired"
    assert "venció el 28-02-2025" in error.message
    assert "desde el 01-03-2023" in error.message


def test_not_yet_valid() -> None:
    data = pfx(
        not_before=datetime(2025, 7, 1, 12, 0, tzinfo=UTC),
        not_after=datetime(2027, 7, 1, 12, 0, tzinfo=UTC),
    )
    error = refused(data)
    assert error.code == "signature_not_yet_valid"
    assert "desde el 01-07-2025 hasta el 01-07-2027" in error.message


@pytest.mark.parametrize("holder_rut", [None, "12.345.678-9", "sin rut"])
def test_no_rut(holder_rut: str | None) -> None:
    error = refused(pfx(holder_rut=holder_rut))
    assert error.code == "signature_no_rut"
    assert "RUT" in error.message


def test_rut_mismatch(valid: bytes) -> None:
    error = refused(valid, expected_rut=Rut.parse("11.111.111-1"))
    assert error.code == "signature_rut_mismatch"
    assert "12.345.678-5" in error.message
    assert "11.111.111-1" in error.message


def test_now_must_be_timezone_aware(valid: bytes) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        load_signature(valid, PASSWORD, now=datetime(2025, 6, 1))


def test_signature_errors_are_value_errors(valid: bytes) -> None:
    with pytest.raises(ValueError, match="contraseña"):
        load(valid, "otra")


# --- Whatever the bytes, only SignatureError ---------------------------------


def _only_signature_errors(data: bytes, password: str = PASSWORD) -> None:
    with contextlib.suppress(SignatureError):
        load(data, password)


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=2048))
def test_fuzz_random_bytes(data: bytes) -> None:
    _only_signature_errors(data)


_PASSWORDS = st.text(
    st.one_of(
        st.sampled_from(["\x00", "\udc80", "\ud800", "ñ", "\u200b"]),
        st.characters(blacklist_categories=()),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=2048), password=_PASSWORDS)
def test_fuzz_random_bytes_and_passwords(data: bytes, password: str) -> None:
    _only_signature_errors(data, password)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(password=_PASSWORDS)
@example(password="firma\x00123")
@example(password="\udc80")
@example(password="")
def test_fuzz_passwords_on_a_real_file(valid: bytes, password: str) -> None:
    _only_signature_errors(valid, password)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_random_tails_after_a_pfx_header(
    valid: bytes, data: st.DataObject
) -> None:
    keep = data.draw(st.integers(min_value=0, max_value=64))
    tail = data.draw(st.binary(max_size=512))
    _only_signature_errors(valid[:keep] + tail)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_fuzz_truncations_are_corrupt(valid: bytes, data: st.DataObject) -> None:
    keep = data.draw(st.integers(min_value=1, max_value=len(valid) - 1))
    assert refused(valid[:keep]).code == "signature_corrupt"


# A flip in CBC ciphertext flips the same bit of the next block's plaintext,
# so a damaged certificate may still parse, with a negative serial.
@pytest.mark.filterwarnings("ignore:Parsed a serial number")
@settings(max_examples=200, deadline=None)
@given(st.data())
def test_fuzz_flipped_bytes(valid: bytes, data: st.DataObject) -> None:
    index = data.draw(st.integers(min_value=0, max_value=len(valid) - 1))
    flip = data.draw(st.integers(min_value=1, max_value=255))
    damaged = valid[:index] + bytes([valid[index] ^ flip]) + valid[index + 1 :]
    _only_signature_errors(damaged)


# --- The summary as data -----------------------------------------------------


def test_info_as_dict_is_json_and_comes_back(valid: bytes) -> None:
    info = load(pfx(not_after=NOW + timedelta(days=3))).info
    data = info.as_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["holder_rut"] == "12345678-5"
    assert data["not_before"] == "2025-01-15T12:00:00+00:00"
    assert isinstance(data["warnings"], list)
    assert len(data["warnings"]) == 1
    assert SignatureInfo.from_dict(data) == info


def test_info_without_rut_comes_back() -> None:
    info = SignatureInfo(
        holder_name="X",
        holder_rut=None,
        issuer="Y",
        serial="01",
        not_before=NOT_BEFORE,
        not_after=NOT_AFTER,
        fingerprint_sha256="00",
    )
    assert SignatureInfo.from_dict(info.as_dict()) == info


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("not_before", "2025-01-15T12:00:00"),
        ("not_after", 12),
        ("holder_name", None),
        ("warnings", "una"),
        ("holder_rut", "12345678-9"),
    ],
)
def test_info_from_dict_refuses_bad_data(key: str, value: object, valid: bytes) -> None:
    data: dict[str, object] = dict(load(valid).info.as_dict())
    data[key] = value
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        SignatureInfo.from_dict(data)


def test_info_from_dict_refuses_missing_fields(valid: bytes) -> None:
    data: dict[str, object] = dict(load(valid).info.as_dict())
    del data["serial"]
    with pytest.raises(ValueError, match="serial"):
        SignatureInfo.from_dict(data)


# --- Sealing at rest ---------------------------------------------------------


def test_seal_and_open(valid: bytes) -> None:
    loaded = load(valid)
    sealer = SignatureSealer([SignatureSealer.generate_key()])
    key, certificate = sealer.open(sealer.seal(loaded))

    assert certificate == loaded.certificate
    der = serialization.Encoding.DER
    pkcs8 = serialization.PrivateFormat.PKCS8
    none = serialization.NoEncryption()
    assert key.private_bytes(der, pkcs8, none) == loaded.private_key.private_bytes(
        der, pkcs8, none
    )


def test_the_sealed_blob_holds_no_password_and_no_clear_key(valid: bytes) -> None:
    loaded = load(valid)
    secret = SignatureSealer.generate_key()
    sealed = SignatureSealer([secret]).seal(loaded)
    key_der = loaded.private_key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    assert key_der[40:80] not in sealed
    payload = Fernet(secret).decrypt(sealed)
    assert PASSWORD.encode() not in payload
    assert key_der in payload


def test_the_wrong_key_opens_nothing(valid: bytes) -> None:
    sealed = SignatureSealer([SignatureSealer.generate_key()]).seal(load(valid))
    stranger = SignatureSealer([SignatureSealer.generate_key()])
    with pytest.raises(SignatureError) as caught:
        stranger.open(sealed)
    assert caught.value.code == "signature_sealed_unreadable"


@pytest.mark.parametrize("damage", ["flip", "cut", "garbage", "empty"])
def test_a_damaged_blob_opens_nothing(damage: str, valid: bytes) -> None:
    sealer = SignatureSealer([SignatureSealer.generate_key()])
    sealed = sealer.seal(load(valid))
    middle = len(sealed) // 2
    damaged = {
        "flip": sealed[:middle] + bytes([sealed[middle] ^ 1]) + sealed[middle + 1 :],
        "cut": sealed[:middle],
        "garbage": b"no es un sello",
        "empty": b"",
    }[damage]
    with pytest.raises(SignatureError) as caught:
        sealer.open(damaged)
    assert caught.value.code == "signature_sealed_unreadable"


def test_a_sealed_foreign_payload_opens_nothing() -> None:
    secret = SignatureSealer.generate_key()
    sealed = Fernet(secret).encrypt(b"HOS\x01\x00\x00\x00\x05hola")
    with pytest.raises(SignatureError) as caught:
        SignatureSealer([secret]).open(sealed)
    assert caught.value.code == "signature_sealed_unreadable"


def test_key_rotation(valid: bytes) -> None:
    loaded = load(valid)
    old, new = SignatureSealer.generate_key(), SignatureSealer.generate_key()
    old_blob = SignatureSealer([old]).seal(loaded)

    rotated = SignatureSealer([new, old])
    assert rotated.open(old_blob)[1] == loaded.certificate

    new_blob = rotated.seal(loaded)
    assert SignatureSealer([new]).open(new_blob)[1] == loaded.certificate
    with pytest.raises(SignatureError):
        SignatureSealer([old]).open(new_blob)


def test_sealer_configuration_errors() -> None:
    key = SignatureSealer.generate_key()
    assert len(key) == 44
    Fernet(key)
    with pytest.raises(TypeError):
        SignatureSealer(key)
    with pytest.raises(ValueError, match="at least one key"):
        SignatureSealer([])
    with pytest.raises(ValueError, match="Fernet key"):
        SignatureSealer(["not-a-key"])
