"""Real PKCS#12 signature files for tests, shaped like Chilean ones.

``make_pkcs12`` writes a ``.pfx`` the way a Chilean certifying authority
issues it: a holder certificate signed by a test authority named
"E-Cert Chile Pruebas", with the holder's RUT in the subjectAltName
(otherName 1.3.6.1.4.1.8321.1) and the authority's RUT in the
issuerAltName (otherName 1.3.6.1.4.1.8321.2), both as DER IA5Strings with
dots. The knobs make the broken files customers upload: expired, not yet
valid, without a key, with somebody else's key, with old encryption.

RSA keys are generated once per process and size, then reused: generating
them is what would make a test suite slow. The files are for tests only;
their keys are not secret from anybody.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from haulmer_onboarding.errors import RutError
from haulmer_onboarding.rut import Rut

__all__ = [
    "AUTHORITY_NAME",
    "make_certificate_der",
    "make_certificate_pem",
    "make_pkcs12",
    "require_openssl",
]

AUTHORITY_NAME = "E-Cert Chile Pruebas"

_HOLDER_RUT_OID = x509.ObjectIdentifier("1.3.6.1.4.1.8321.1")
_ISSUER_RUT_OID = x509.ObjectIdentifier("1.3.6.1.4.1.8321.2")

# Iterations as OpenSSL uses by default: enough to be a real file, few enough
# that opening one in a test costs nothing.
_KDF_ROUNDS = 2048

# Arguments of `openssl pkcs12 -export` for each encryption, used for what
# cryptography cannot write: RC2-40, and any file with an empty password.
_OPENSSL_PBE = {
    "rc2": ["-legacy", "-certpbe", "PBE-SHA1-RC2-40", "-keypbe", "PBE-SHA1-3DES"],
    "3des": [
        "-certpbe",
        "PBE-SHA1-3DES",
        "-keypbe",
        "PBE-SHA1-3DES",
        "-macalg",
        "sha1",
    ],
    "aes": ["-certpbe", "AES-256-CBC", "-keypbe", "AES-256-CBC"],
}

Encryption = Literal["aes", "3des", "rc2"]


@functools.cache
def _key(key_size: int, role: str) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=key_size)


def _ia5_string(text: str) -> bytes:
    """``text`` as a DER IA5String, header included."""
    body = text.encode("ascii")
    if len(body) < 0x80:
        return b"\x16" + bytes([len(body)]) + body
    size = len(body).to_bytes((len(body).bit_length() + 7) // 8, "big")
    return b"\x16" + bytes([0x80 | len(size)]) + size + body


def _rut_text(value: str) -> str:
    # A RUT that does not parse goes in as written, so that tests can make a
    # certificate with a wrong one.
    try:
        return Rut.parse(value).formatted()
    except RutError:
        return value


def _validity(
    not_before: datetime | None, not_after: datetime | None
) -> tuple[datetime, datetime]:
    now = datetime.now(UTC).replace(microsecond=0)
    if not_before is None:
        not_before = min(now, not_after or now) - timedelta(days=30)
    if not_after is None:
        not_after = max(now, not_before) + timedelta(days=365)
    return not_before, not_after


def _authority(
    issuer_rut: str, not_before: datetime, not_after: datetime, key_size: int
) -> x509.Certificate:
    key = _key(key_size, "authority")
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CL"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "E-CERTCHILE"),
            x509.NameAttribute(NameOID.COMMON_NAME, AUTHORITY_NAME),
        ]
    )
    issuer_alt = x509.OtherName(_ISSUER_RUT_OID, _ia5_string(_rut_text(issuer_rut)))
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before - timedelta(days=1))
        .not_valid_after(not_after + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectAlternativeName([issuer_alt]), critical=False)
        .sign(key, hashes.SHA256())
    )


def _holder(
    authority: x509.Certificate,
    *,
    holder_name: str,
    holder_rut: str | None,
    issuer_rut: str,
    not_before: datetime,
    not_after: datetime,
    key_size: int,
) -> x509.Certificate:
    if holder_rut is None:
        alt_names: list[x509.GeneralName] = [x509.RFC822Name("titular@example.cl")]
    else:
        value = _ia5_string(_rut_text(holder_rut))
        alt_names = [x509.OtherName(_HOLDER_RUT_OID, value)]
    issuer_alt = x509.OtherName(_ISSUER_RUT_OID, _ia5_string(_rut_text(issuer_rut)))
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CL"),
            x509.NameAttribute(NameOID.COMMON_NAME, holder_name),
        ]
    )
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(authority.subject)
        .public_key(_key(key_size, "holder").public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.IssuerAlternativeName([issuer_alt]), critical=False)
        .sign(_key(key_size, "authority"), hashes.SHA256())
    )


def _certificates(
    *,
    holder_name: str,
    holder_rut: str | None,
    not_before: datetime | None,
    not_after: datetime | None,
    issuer_rut: str,
    key_size: int,
) -> tuple[x509.Certificate, x509.Certificate]:
    """The authority's certificate and the holder's."""
    start, end = _validity(not_before, not_after)
    authority = _authority(issuer_rut, start, end, key_size)
    holder = _holder(
        authority,
        holder_name=holder_name,
        holder_rut=holder_rut,
        issuer_rut=issuer_rut,
        not_before=start,
        not_after=end,
        key_size=key_size,
    )
    return authority, holder


def _pem(*items: x509.Certificate | rsa.RSAPrivateKey) -> bytes:
    chunks = []
    for item in items:
        if isinstance(item, x509.Certificate):
            chunks.append(item.public_bytes(serialization.Encoding.PEM))
        else:
            chunks.append(
                item.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
    return b"".join(chunks)


def require_openssl() -> str:
    """The system ``openssl`` command, for a test that makes files with it.

    Without the command the test is skipped on a developer's machine and
    fails under ``CI=true``: CI installs it, so its absence there is a
    broken setup, not a reason to test less.
    """
    import pytest  # only tests call this; make_pkcs12 must not need pytest

    found = shutil.which("openssl")
    if found is not None:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail("the openssl command is missing; .ci/run installs it")
    pytest.skip("the openssl command is not installed")


def _openssl_export(
    key: rsa.RSAPrivateKey,
    holder: x509.Certificate,
    authority: x509.Certificate,
    *,
    name: str,
    password: str,
    encryption: Encryption,
    include_key: bool,
    mismatched_key: bool,
) -> bytes:
    """The file as the system's ``openssl pkcs12 -export`` writes it."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError(
            f"encryption={encryption!r} with this password needs the openssl "
            "command, which is not on PATH"
        )

    with tempfile.TemporaryDirectory() as folder:
        files = Path(folder)
        (files / "key.pem").write_bytes(_pem(key))
        (files / "holder.pem").write_bytes(_pem(holder))
        (files / "authority.pem").write_bytes(_pem(authority))
        (files / "both.pem").write_bytes(_pem(holder, authority))

        args = [openssl, "pkcs12", "-export", *_OPENSSL_PBE[encryption]]
        args += ["-name", name, "-passout", "env:HAULMER_TEST_P12_PASSWORD"]
        args += ["-out", str(files / "out.p12")]
        if not include_key:
            args += ["-nokeys", "-in", str(files / "both.pem")]
        elif mismatched_key:
            # openssl refuses a key with a certificate that is not its own,
            # but packs certificates given apart from the key as they come.
            args += ["-inkey", str(files / "key.pem"), "-nocerts"]
            args += ["-certfile", str(files / "both.pem")]
        else:
            args += ["-inkey", str(files / "key.pem"), "-in", str(files / "holder.pem")]
            args += ["-certfile", str(files / "authority.pem")]

        env = {**os.environ, "HAULMER_TEST_P12_PASSWORD": password}
        # The arguments are ours; nothing comes from outside the test.
        done = subprocess.run(args, capture_output=True, env=env, check=False)  # noqa: S603
        if done.returncode != 0:
            raise RuntimeError(
                "openssl pkcs12 -export failed: "
                + done.stderr.decode("utf-8", "replace").strip()
            )
        return (files / "out.p12").read_bytes()


def _encryption(
    encryption: Encryption, password: str
) -> serialization.KeySerializationEncryption:
    builder = serialization.PrivateFormat.PKCS12.encryption_builder().kdf_rounds(
        _KDF_ROUNDS
    )
    if encryption == "3des":
        # SHA-1 is what the old 3DES files carry; tests need them as they are.
        algorithm = pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC
        builder = builder.key_cert_algorithm(algorithm).hmac_hash(
            hashes.SHA1()  # noqa: S303
        )
    else:
        builder = builder.key_cert_algorithm(
            pkcs12.PBES.PBESv2SHA256AndAES256CBC
        ).hmac_hash(hashes.SHA256())
    return builder.build(password.encode("utf-8"))


def make_pkcs12(
    *,
    holder_name: str = "María José Pérez Soto",
    holder_rut: str | None = "12345678-5",
    password: str = "firma-1234",  # noqa: S107 - a test file's password
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    encryption: Encryption = "aes",
    include_key: bool = True,
    mismatched_key: bool = False,
    issuer_rut: str = "96928180-5",
    key_size: int = 2048,
) -> bytes:
    """A PKCS#12 file (the bytes of a ``.pfx``) with a Chilean-style signature.

    Without dates the certificate started 30 days ago and lasts a year.
    ``holder_rut=None`` leaves the RUT out (the subjectAltName then holds only
    an email address); a RUT that does not parse is written as given.
    ``include_key=False`` packs only certificates; ``mismatched_key=True``
    packs the certificate with a key that is not its own. ``"aes"`` and
    ``"3des"`` are written by cryptography; ``"rc2"`` (RC2-40, as old files
    are) and an empty password need the system ``openssl`` and raise
    ``RuntimeError`` without it.
    """
    authority, holder = _certificates(
        holder_name=holder_name,
        holder_rut=holder_rut,
        not_before=not_before,
        not_after=not_after,
        issuer_rut=issuer_rut,
        key_size=key_size,
    )
    key = _key(key_size, "other" if mismatched_key else "holder")

    if encryption == "rc2" or not password:
        return _openssl_export(
            key,
            holder,
            authority,
            name=holder_name,
            password=password,
            encryption=encryption,
            include_key=include_key,
            mismatched_key=mismatched_key,
        )

    name = holder_name.encode("utf-8")
    protection = _encryption(encryption, password)
    if not include_key:
        return pkcs12.serialize_key_and_certificates(
            name, None, holder, [authority], protection
        )
    if mismatched_key:
        # cryptography refuses to pair a key with a foreign certificate, so
        # the certificate travels as one of the others, unpaired.
        return pkcs12.serialize_key_and_certificates(
            name, key, None, [holder, authority], protection
        )
    return pkcs12.serialize_key_and_certificates(
        name, key, holder, [authority], protection
    )


def make_certificate_pem(
    *,
    holder_name: str = "María José Pérez Soto",
    holder_rut: str | None = "12345678-5",
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    issuer_rut: str = "96928180-5",
    key_size: int = 2048,
) -> bytes:
    """The holder's certificate alone, in PEM: a ``.pem`` or ``.crt`` file."""
    _, holder = _certificates(
        holder_name=holder_name,
        holder_rut=holder_rut,
        not_before=not_before,
        not_after=not_after,
        issuer_rut=issuer_rut,
        key_size=key_size,
    )
    return holder.public_bytes(serialization.Encoding.PEM)


def make_certificate_der(
    *,
    holder_name: str = "María José Pérez Soto",
    holder_rut: str | None = "12345678-5",
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    issuer_rut: str = "96928180-5",
    key_size: int = 2048,
) -> bytes:
    """The holder's certificate alone, in DER: a ``.cer`` file."""
    pem = make_certificate_pem(
        holder_name=holder_name,
        holder_rut=holder_rut,
        not_before=not_before,
        not_after=not_after,
        issuer_rut=issuer_rut,
        key_size=key_size,
    )
    return x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
