"""A signature at rest: the database alone yields no usable key."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import attrs
import pytest
from cryptography import x509
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    pkcs12,
)
from cryptography.x509.oid import NameOID

from haulmer_onboarding import Onboarding, SignatureError
from haulmer_onboarding.signatures import SignatureSealer, load_signature
from haulmer_onboarding.store import journeys
from haulmer_onboarding.testing.journey import JourneyWalker
from haulmer_onboarding.testing.scenarios import purchase_for
from haulmer_onboarding.testing.signatures import make_pkcs12
from haulmer_onboarding.testing.smtp import SmtpCatcher

PASSWORD = "Clave-De-La-Firma-2026"


def database_bytes(onboarding: Onboarding) -> bytes:
    """Every byte SQLite wrote: the main file and its write-ahead log."""
    onboarding.store.dispose()
    path = Path(onboarding.settings.database_url.removeprefix("sqlite:///"))
    files = [path, path.with_name(path.name + "-wal")]
    return b"".join(p.read_bytes() for p in files if p.exists())


def upload(onboarding: Onboarding, catcher: SmtpCatcher, pfx: bytes) -> int:
    walker = JourneyWalker(onboarding, catcher, "http://127.0.0.1:9")
    purchase = purchase_for("simple", "ana@example.cl")
    journey, _ = walker.to_signature(purchase, pfx, PASSWORD)
    return journey.id


def test_the_database_holds_no_key_no_password_and_only_public_facts(
    onboarding: Onboarding, catcher: SmtpCatcher
) -> None:
    pfx = make_pkcs12(password=PASSWORD)
    key, certificate, _ = pkcs12.load_key_and_certificates(pfx, PASSWORD.encode())
    assert key is not None
    assert certificate is not None
    journey_id = upload(onboarding, catcher, pfx)

    stored = onboarding.journey(journey_id).signature
    assert stored is not None
    assert stored["holder_rut"] == "12345678-5"
    assert set(stored) <= {
        "holder_name",
        "holder_rut",
        "issuer",
        "serial",
        "not_before",
        "not_after",
        "fingerprint_sha256",
        "warnings",
        "legal_representative_rut",
    }
    assert stored["legal_representative_rut"] == "12345678-5"

    dump = database_bytes(onboarding)
    secret_forms = [
        key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption()),
        key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()),
        key.private_bytes(
            Encoding.DER, PrivateFormat.TraditionalOpenSSL, NoEncryption()
        ),
        pfx,
        PASSWORD.encode(),
    ]
    for secret in secret_forms:
        assert secret not in dump
    # Not even a fragment of the key's private exponent.
    private_exponent = key.private_numbers().d.to_bytes(256, "big")  # type: ignore[union-attr]
    assert private_exponent[:32] not in dump


def test_a_sealed_signature_opens_only_with_a_server_key(
    onboarding: Onboarding, catcher: SmtpCatcher
) -> None:
    journey_id = upload(onboarding, catcher, make_pkcs12(password=PASSWORD))
    with onboarding.store.begin() as conn:
        sealed = (
            conn.execute(journeys.select().where(journeys.c.id == journey_id))
            .one()
            .signature_sealed
        )
    assert sealed

    with pytest.raises(SignatureError) as info:
        SignatureSealer([Fernet.generate_key().decode()]).open(sealed)
    assert info.value.code == "signature_sealed_unreadable"

    key, certificate = onboarding.sealer.open(sealed)
    spki = (Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    assert key.public_key().public_bytes(*spki) == (
        certificate.public_key().public_bytes(*spki)
    )
    # After rotation the old key still opens what it sealed.
    rotated = SignatureSealer(
        [Fernet.generate_key().decode(), *onboarding.settings.sealing_keys]
    )
    assert rotated.open(sealed)[1] == certificate


def test_old_sealing_keys_can_be_retired_after_resealing(
    onboarding: Onboarding, catcher: SmtpCatcher
) -> None:
    journey_id = upload(onboarding, catcher, make_pkcs12(password=PASSWORD))
    new_key = Fernet.generate_key().decode()
    rotated = Onboarding(
        attrs.evolve(
            onboarding.settings,
            sealing_keys=(new_key, *onboarding.settings.sealing_keys),
        )
    )
    assert rotated.reseal_signatures() == 1

    only_new = SignatureSealer([new_key])
    with rotated.store.begin() as conn:
        sealed = (
            conn.execute(journeys.select().where(journeys.c.id == journey_id))
            .one()
            .signature_sealed
        )
    assert only_new.open(sealed)[1].serial_number


def test_a_signature_without_an_rsa_key_is_refused() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Ana Pérez")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=300))
        .sign(key, hashes.SHA256())
    )
    pfx = pkcs12.serialize_key_and_certificates(
        b"ana", key, certificate, None, BestAvailableEncryption(PASSWORD.encode())
    )
    with pytest.raises(SignatureError) as info:
        load_signature(pfx, PASSWORD, now=now)
    assert info.value.code == "signature_unsupported"
    assert "RSA" in info.value.message
