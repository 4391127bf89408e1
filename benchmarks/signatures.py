"""Sealing a signature at rest, against bare Fernet on the same bytes.

    .venv/bin/python benchmarks/signatures.py

For one real PKCS#12 file (RSA 2048, AES): how many times a second the SDK
loads it (password, shape and RUT checks), seals its key and certificate,
and opens the sealed blob; each beside bare Fernet encrypting and
decrypting the same number of bytes, the baseline of the same run. Then
the refusals that cost key derivations: a wrong password, and a file
damaged inside (each encrypted part tried alone to tell the two apart),
against bare ``cryptography`` opening the good file in the same run.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime

from asn1crypto import pkcs12 as asn1_pkcs12
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    pkcs12,
)

from haulmer_onboarding.errors import SignatureError
from haulmer_onboarding.signatures import SignatureSealer, load_signature
from haulmer_onboarding.testing.signatures import make_pkcs12

ROUNDS = 3
PASSWORD = "firma-1234"


def rate(action: Callable[[], object], count: int) -> float:
    best = float("inf")
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for _ in range(count):
            action()
        best = min(best, time.perf_counter() - start)
    return count / best


def refused(data: bytes, password: str, now: datetime, code: str) -> None:
    try:
        load_signature(data, password, now=now)
    except SignatureError as error:
        if error.code != code:
            raise AssertionError(f"{error.code}, not {code}") from None
        return
    raise AssertionError("loaded")


def damaged_inside(pfx: bytes) -> bytes:
    """``pfx`` with one bit of its encrypted key flipped."""
    for part in asn1_pkcs12.Pfx.load(pfx).authenticated_safe:
        if part["content_type"].native == "data":
            bags = asn1_pkcs12.SafeContents.load(part["content"].native)
            ciphertext = bytes(bags[0]["bag_value"]["encrypted_data"].native)
            at = pfx.index(ciphertext) + 100
            return pfx[:at] + bytes([pfx[at] ^ 1]) + pfx[at + 1 :]
    raise AssertionError("no key bag")


def main() -> int:
    pfx = make_pkcs12(password=PASSWORD)
    now = datetime.now(UTC)
    loaded = load_signature(pfx, PASSWORD, now=now)
    key = SignatureSealer.generate_key()
    sealer = SignatureSealer([key])
    sealed = sealer.seal(loaded)

    plain = loaded.private_key.private_bytes(
        Encoding.DER, PrivateFormat.PKCS8, NoEncryption()
    ) + loaded.certificate.public_bytes(Encoding.DER)
    fernet = Fernet(key.encode())
    token = fernet.encrypt(plain)
    secret = PASSWORD.encode()
    damaged = damaged_inside(pfx)

    rows = [
        ("bare Fernet encrypt", rate(lambda: fernet.encrypt(plain), 2_000)),
        ("bare Fernet decrypt", rate(lambda: fernet.decrypt(token), 2_000)),
        ("seal", rate(lambda: sealer.seal(loaded), 2_000)),
        ("open", rate(lambda: sealer.open(sealed), 2_000)),
        (
            "load (.pfx + password)",
            rate(lambda: load_signature(pfx, PASSWORD, now=now), 200),
        ),
        (
            "bare cryptography load",
            rate(lambda: pkcs12.load_key_and_certificates(pfx, secret), 200),
        ),
        (
            "wrong password",
            rate(lambda: refused(pfx, "otra", now, "signature_wrong_password"), 200),
        ),
        (
            "damaged inside",
            rate(lambda: refused(damaged, PASSWORD, now, "signature_damaged"), 200),
        ),
    ]
    print(f"{len(pfx)}-byte .pfx; sealed blob {len(sealed)} bytes\n")
    print(f"{'operation':<24} {'per second':>11} {'ratio':>7}")
    bare_load = rows[5][1]
    baselines = {
        "seal": rows[0][1],
        "open": rows[1][1],
        "load (.pfx + password)": bare_load,
        "wrong password": bare_load,
        "damaged inside": bare_load,
    }
    for name, value in rows:
        base = baselines.get(name)
        ratio = f"{value / base:>7.2f}" if base else f"{'':>7}"
        print(f"{name:<24} {value:>11,.0f} {ratio}")
    print(
        "\nratio: seal against bare encrypt, open against bare decrypt, loads and"
        "\nrefusals against bare cryptography loading the good file, in the same run"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
