"""Signature files written by the system ``openssl`` 3, as customers' are.

A small certifying authority made with ``openssl req`` issues the holder's
certificates with ``openssl ca`` (this openssl, 3.0, has no ``-not_before``
or ``-not_after``; ``ca -startdate/-enddate`` sets any dates), with the
holder's RUT as the subjectAltName otherName 1.3.6.1.4.1.8321.1. Each file
is then packed by ``openssl pkcs12 -export`` three ways: the current default
(AES-256), ``-legacy`` (RC2-40 certificates, 3DES key, as old files are) and
3DES. Every case must get its code from every one of them.

Without the command these tests skip on a developer's machine and fail under
``CI=true``.
"""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import attrs
import pytest
from asn1crypto import cms, pkcs12
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from haulmer_onboarding.errors import SignatureError
from haulmer_onboarding.rut import Rut
from haulmer_onboarding.signatures import (
    MAX_DERIVATIONS,
    LoadedSignature,
    load_signature,
)
from haulmer_onboarding.testing.signatures import require_openssl

PASSWORD = "Firma.2025"
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
HOLDER = "Juan Pérez Rojas"
HOLDER_RUT = "12.345.678-5"

ENCRYPTIONS = {
    "aes": (),
    "legacy-rc2-40": ("-legacy",),
    "3des": ("-certpbe", "PBE-SHA1-3DES", "-keypbe", "PBE-SHA1-3DES"),
}

# name: (start, end, subjectAltName or None), dates as openssl ca takes them.
CERTIFICATES = {
    "valid": ("20250115120000Z", "20270115120000Z", HOLDER_RUT),
    "expired": ("20230101000000Z", "20240101000000Z", HOLDER_RUT),
    "not_yet_valid": ("20250901000000Z", "20270901000000Z", HOLDER_RUT),
    # Ends 9 days and a half after NOW.
    "expiring": ("20240611000000Z", "20250611000000Z", HOLDER_RUT),
    "no_rut": ("20250115120000Z", "20270115120000Z", None),
}

CA_CONFIG = """\
[ca]
default_ca = test_ca

[test_ca]
database = index.txt
new_certs_dir = .
serial = serial
default_md = sha256
policy = any_name
unique_subject = no
email_in_dn = no

[any_name]
countryName = optional
commonName = supplied

[holder]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,nonRepudiation,keyEncipherment
subjectAltName = otherName:1.3.6.1.4.1.8321.1;IA5STRING:{rut}
issuerAltName = otherName:1.3.6.1.4.1.8321.2;IA5STRING:96.928.180-5

[holder_without_rut]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,nonRepudiation,keyEncipherment
subjectAltName = email:titular@example.cl
"""


@attrs.frozen
class Openssl:
    """The openssl command, working in one folder."""

    path: str
    folder: Path

    def __call__(self, *args: str) -> str:
        done = subprocess.run(
            [self.path, *args],
            cwd=self.folder,
            capture_output=True,
            check=False,
            env={**os.environ, "P12_PASSWORD": PASSWORD},
        )
        if done.returncode != 0:
            raise AssertionError(f"openssl {args[0]} failed: {done.stderr.decode()}")
        return done.stdout.decode() + done.stderr.decode()

    def export(self, *options: str) -> bytes:
        """``openssl pkcs12 -export`` with ``options``; the file's bytes."""
        self(
            "pkcs12",
            "-export",
            *options,
            "-name",
            HOLDER,
            "-passout",
            "env:P12_PASSWORD",
            "-out",
            "out.p12",
        )
        return (self.folder / "out.p12").read_bytes()


@pytest.fixture(scope="module")
def openssl(tmp_path_factory: pytest.TempPathFactory) -> Openssl:
    tool = Openssl(require_openssl(), tmp_path_factory.mktemp("openssl"))
    (tool.folder / "ca.cnf").write_text(CA_CONFIG.format(rut=HOLDER_RUT))
    (tool.folder / "index.txt").write_text("")
    (tool.folder / "serial").write_text("1000\n")
    for key in ("ca", "holder", "other"):
        tool("genpkey", "-algorithm", "RSA", "-out", f"{key}.key")
    tool(
        "req",
        "-x509",
        "-key",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "7300",
        "-subj",
        "/C=CL/O=E-CERTCHILE/CN=E-Cert Chile Pruebas openssl",
    )
    tool(
        "req",
        "-new",
        "-utf8",
        "-key",
        "holder.key",
        "-out",
        "holder.csr",
        "-subj",
        f"/C=CL/CN={HOLDER}",
    )
    for name, (start, end, rut) in CERTIFICATES.items():
        tool(
            "ca",
            "-batch",
            "-utf8",
            "-notext",
            "-config",
            "ca.cnf",
            "-cert",
            "ca.pem",
            "-keyfile",
            "ca.key",
            "-in",
            "holder.csr",
            "-out",
            f"{name}.pem",
            "-startdate",
            start,
            "-enddate",
            end,
            "-extensions",
            "holder" if rut else "holder_without_rut",
        )
    return tool


def packed(openssl: Openssl, certificate: str, encryption: str) -> bytes:
    """The holder's key and ``certificate``, with the authority's."""
    return openssl.export(
        *ENCRYPTIONS[encryption],
        "-inkey",
        "holder.key",
        "-in",
        f"{certificate}.pem",
        "-certfile",
        "ca.pem",
    )


def load(data: bytes, password: str = PASSWORD, **options: object) -> LoadedSignature:
    return load_signature(data, password, now=NOW, **options)  # type: ignore[arg-type]


def refused(data: bytes, password: str = PASSWORD, **options: object) -> SignatureError:
    with pytest.raises(SignatureError) as caught:
        load(data, password, **options)
    return caught.value


each_encryption = pytest.mark.parametrize("encryption", list(ENCRYPTIONS))


# --- Files that load ---------------------------------------------------------


@each_encryption
def test_a_good_file_loads(openssl: Openssl, encryption: str) -> None:
    data = packed(openssl, "valid", encryption)
    (openssl.folder / "check.p12").write_bytes(data)
    described = openssl(
        "pkcs12",
        "-info",
        "-noout",
        "-legacy",
        "-in",
        "check.p12",
        "-passin",
        "env:P12_PASSWORD",
    )
    expected = {
        "aes": "AES-256-CBC",
        "legacy-rc2-40": "pbeWithSHA1And40BitRC2-CBC",
        "3des": "pbeWithSHA1And3-KeyTripleDES-CBC",
    }[encryption]
    assert expected in described

    loaded = load(data)
    assert loaded.info.holder_name == HOLDER
    assert loaded.info.holder_rut == Rut.parse(HOLDER_RUT)
    assert loaded.info.issuer == "E-Cert Chile Pruebas openssl"
    assert loaded.info.not_before == datetime(2025, 1, 15, 12, 0, tzinfo=UTC)
    assert loaded.info.not_after == datetime(2027, 1, 15, 12, 0, tzinfo=UTC)
    assert loaded.info.warnings == ()
    fingerprint = openssl(
        "x509", "-in", "valid.pem", "-noout", "-fingerprint", "-sha256"
    )
    assert fingerprint.split("=", 1)[1].strip().replace(":", "").lower() == (
        loaded.info.fingerprint_sha256
    )


@each_encryption
def test_expiring_soon_loads_with_a_warning(openssl: Openssl, encryption: str) -> None:
    loaded = load(packed(openssl, "expiring", encryption))
    assert loaded.info.warnings == (
        "La firma electrónica vence el 10-06-2025, en 9 días. Renuévala a "
        "tiempo con tu entidad certificadora para no interrumpir la emisión "
        "de documentos.",
    )
    # Outside a shorter window, no warning.
    quiet = load(packed(openssl, "expiring", encryption), expiry_warning_days=5)
    assert quiet.info.warnings == ()


def test_the_expected_rut_passes(openssl: Openssl) -> None:
    loaded = load(packed(openssl, "valid", "aes"), expected_rut=Rut(12345678, "5"))
    assert loaded.info.holder_rut == Rut(12345678, "5")


def test_usual_iteration_counts_still_load(openssl: Openssl) -> None:
    for count in ("2048", "100000"):
        data = openssl.export(
            "-iter", count, "-inkey", "holder.key", "-in", "valid.pem"
        )
        assert load(data).info.holder_rut == Rut.parse(HOLDER_RUT)


# --- Every refusal, from every kind of file ----------------------------------


@each_encryption
def test_expired(openssl: Openssl, encryption: str) -> None:
    error = refused(packed(openssl, "expired", encryption))
    assert error.code == "signature_expired"
    # Midnight UTC is the evening before in Santiago: Chile's calendar day.
    assert "venció el 31-12-2023" in error.message
    assert "desde el 31-12-2022" in error.message


@each_encryption
def test_not_yet_valid(openssl: Openssl, encryption: str) -> None:
    error = refused(packed(openssl, "not_yet_valid", encryption))
    assert error.code == "signature_not_yet_valid"
    assert "desde el 31-08-2025 hasta el 31-08-2027" in error.message


@each_encryption
def test_key_and_certificate_not_matching(openssl: Openssl, encryption: str) -> None:
    # openssl refuses `-inkey other.key -in valid.pem` ("No cert in -in file
    # matches private key"), but packs certificates given with -certfile as
    # they come, next to a key that is not theirs: such files exist.
    with pytest.raises(AssertionError, match="matches private key"):
        openssl.export("-inkey", "other.key", "-in", "valid.pem")
    data = openssl.export(
        *ENCRYPTIONS[encryption],
        "-inkey",
        "other.key",
        "-nocerts",
        "-certfile",
        "valid.pem",
    )
    error = refused(data)
    assert error.code == "signature_key_mismatch"
    assert "no corresponde" in error.message


@each_encryption
def test_no_key(openssl: Openssl, encryption: str) -> None:
    data = openssl.export(*ENCRYPTIONS[encryption], "-nokeys", "-in", "valid.pem")
    assert refused(data).code == "signature_no_key"


@each_encryption
def test_no_holder_rut(openssl: Openssl, encryption: str) -> None:
    assert refused(packed(openssl, "no_rut", encryption)).code == "signature_no_rut"


@each_encryption
def test_holder_rut_other_than_the_legal_representative_s(
    openssl: Openssl, encryption: str
) -> None:
    data = packed(openssl, "valid", encryption)
    error = refused(data, expected_rut=Rut.parse("11.111.111-1"))
    assert error.code == "signature_rut_mismatch"
    assert "12.345.678-5" in error.message
    assert "11.111.111-1" in error.message


@each_encryption
def test_wrong_password(openssl: Openssl, encryption: str) -> None:
    error = refused(packed(openssl, "valid", encryption), "firma.2025")
    assert error.code == "signature_wrong_password"
    assert "no es posible recuperarla" in error.message
    assert "comprar una firma electrónica nueva" in error.message


def test_certificate_and_key_files_are_not_pkcs12(openssl: Openssl) -> None:
    pem = (openssl.folder / "valid.pem").read_bytes()
    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    key = (openssl.folder / "holder.key").read_bytes()
    for data in (pem, der, key):
        assert refused(data).code == "signature_not_pkcs12"


@pytest.mark.parametrize(
    "options",
    [
        # Both the MAC and the encryption ask for 700,000 rounds.
        ("-iter", "700000"),
        # Only the MAC does.
        ("-iter", "700000", "-noiter"),
        # Only the legacy encryption does.
        ("-legacy", "-iter", "700000", "-nomaciter"),
    ],
)
def test_files_asking_for_unbounded_work_are_refused_before_any(
    openssl: Openssl, options: tuple[str, ...]
) -> None:
    data = openssl.export(*options, "-inkey", "holder.key", "-in", "valid.pem")
    error = refused(data)
    assert error.code == "signature_unsupported"
    assert "pide uno nuevo" in error.message


def _parts(data: bytes) -> list[cms.ContentInfo]:
    return list(pkcs12.Pfx.load(data).authenticated_safe)


def _without_mac(*parts: cms.ContentInfo) -> bytes:
    safe = pkcs12.AuthenticatedSafe(list(parts)).dump()
    content = cms.ContentInfo({"content_type": "data", "content": safe})
    return bytes(pkcs12.Pfx({"version": "v3", "auth_safe": content}).dump())


def test_files_asking_for_too_many_derivations_are_refused(openssl: Openssl) -> None:
    data = packed(openssl, "valid", "aes")
    certificates, key = _parts(data)
    assert load(_without_mac(certificates, key)).info.holder_name == HOLDER
    crowded = _without_mac(*[certificates] * MAX_DERIVATIONS, key)
    assert refused(crowded).code == "signature_unsupported"


# --- A damaged file is not a wrong password ----------------------------------


def _ciphertexts(data: bytes) -> dict[str, bytes]:
    """The encrypted bytes of the certificates, the key and the MAC."""
    pfx = pkcs12.Pfx.load(data)
    found = {"mac": pfx["mac_data"]["mac"]["digest"].native}
    for part in pfx.authenticated_safe:
        if part["content_type"].native == "encrypted_data":
            inner = part["content"]["encrypted_content_info"]
            found["certificates"] = inner["encrypted_content"].native
        else:
            for bag in pkcs12.SafeContents.load(part["content"].native):
                if bag["bag_id"].native == "pkcs8_shrouded_key_bag":
                    found["key"] = bag["bag_value"]["encrypted_data"].native
    return found


def _flipped(data: bytes, secret: bytes, index: int) -> bytes:
    at = data.index(secret) + index
    return data[:at] + bytes([data[at] ^ 0x20]) + data[at + 1 :]


@each_encryption
@pytest.mark.parametrize("where", ["key", "certificates", "mac"])
def test_a_damaged_file_with_the_right_password(
    openssl: Openssl, encryption: str, where: str
) -> None:
    data = packed(openssl, "valid", encryption)
    secret = _ciphertexts(data)[where]
    damaged = _flipped(data, secret, len(secret) // 2)
    (openssl.folder / "damaged.p12").write_bytes(damaged)
    # openssl itself only sees the MAC fail, as with a wrong password.
    with pytest.raises(AssertionError, match="Mac verify error"):
        openssl(
            "pkcs12",
            "-in",
            "damaged.p12",
            "-legacy",
            "-passin",
            "env:P12_PASSWORD",
            "-noout",
        )

    error = refused(damaged)
    assert error.code == "signature_damaged"
    assert "La contraseña es correcta" in error.message
    assert "No necesitas comprar una firma nueva" in error.message
    # With a wrong password, the same file cannot be told from any other.
    assert refused(damaged, "otra").code == "signature_wrong_password"


@pytest.fixture(scope="module")
def aes_file(openssl: Openssl) -> bytes:
    return packed(openssl, "valid", "aes")


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.data())
def test_any_damage_to_an_encrypted_part_reads_as_damaged(
    aes_file: bytes, data: st.DataObject
) -> None:
    secrets = _ciphertexts(aes_file)
    where = data.draw(st.sampled_from(["key", "certificates"]))
    index = data.draw(st.integers(0, len(secrets[where]) - 1))
    assert refused(_flipped(aes_file, secrets[where], index)).code == (
        "signature_damaged"
    )


def test_a_file_with_one_encrypted_part_cannot_tell(openssl: Openssl) -> None:
    # With the certificates in clear (-certpbe NONE) the key is the only part
    # a password opens: damaged, it fails as a wrong password would.
    data = openssl.export(
        "-certpbe", "NONE", "-inkey", "holder.key", "-in", "valid.pem"
    )
    assert load(data).info.holder_name == HOLDER
    damaged = _flipped(data, _ciphertexts(data)["key"], 40)
    assert refused(damaged).code == "signature_wrong_password"
