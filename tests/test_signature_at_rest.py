"""A signature at rest: the database alone yields no usable key."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    pkcs12,
)

from haulmer_onboarding import Onboarding, SignatureError
from haulmer_onboarding.signatures import SignatureSealer
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
    journey = onboarding.record_purchase(purchase_for("simple", "ana@example.cl"))
    buyer = journey.buyer.email
    onboarding.set_password(
        walker.token(buyer, "[Haulmer Accounts]", "CREAR CONTRASEÑA"),
        walker.password,
        walker.password,
    )
    setup = walker.token(buyer, "¡Habilita", "INICIAR SETUP")
    onboarding.begin_setup(setup)
    assert journey.organization is not None
    onboarding.choose_organization(setup, organization_id=journey.organization.id)
    onboarding.upload_signature(setup, pfx, PASSWORD)
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
    }

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
