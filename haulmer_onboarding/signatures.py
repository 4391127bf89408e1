"""The legal representative's digital signature: intake and sealing at rest.

``load_signature`` takes the uploaded PKCS#12 file (``.pfx`` or ``.p12``) and
its password and either returns the key, the certificate and a summary
(``SignatureInfo``), or raises ``SignatureError`` with a code a program can
act on and a Spanish message the page can show. It never lets another
exception type out, whatever the bytes are.

The checks run from the cheapest to the most specific: size, the shape of
the file (a ``.cer``, a ``.pem``, a zip or a picture is told apart from a
damaged ``.pfx`` before any password is tried), the password (and, when the
file does not open, whether the password or the file is at fault), the key
and certificate pair, the validity dates, and the holder's RUT.

``SignatureSealer`` encrypts the key and certificate for storage with
Fernet keys that can be rotated. The signature's password is never stored:
once a file is loaded it is not needed again.

Dates in messages are calendar days in Chile (America/Santiago), written
``dd-mm-aaaa``; an expiry warning counts the calendar days left there.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from datetime import datetime

import attrs
from asn1crypto import cms as asn1_cms
from asn1crypto import pkcs12 as asn1_pkcs12
from cryptography import x509
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from haulmer_onboarding.business_days import SANTIAGO
from haulmer_onboarding.errors import RutError, SignatureError
from haulmer_onboarding.rut import Rut

__all__ = [
    "LoadedSignature",
    "SignatureInfo",
    "SignatureSealer",
    "format_size",
    "load_signature",
]

#: The holder's RUT, as an otherName of the certificate's subjectAltName.
HOLDER_RUT_OID = x509.ObjectIdentifier("1.3.6.1.4.1.8321.1")

_MESSAGES = {
    "signature_empty": (
        "El archivo de la firma electrónica está vacío. Sube el archivo .pfx o "
        ".p12 de tu firma."
    ),
    "signature_not_pkcs12": (
        "El archivo no es una firma electrónica. Sube el archivo .pfx o .p12 "
        "que te entregó la entidad certificadora; un certificado .cer o .crt "
        "no sirve, porque no incluye la clave privada."
    ),
    "signature_corrupt": (
        "El archivo de la firma electrónica está incompleto o dañado. "
        "Descárgalo o expórtalo de nuevo y vuelve a subirlo."
    ),
    "signature_password_missing": "Ingresa la contraseña de tu firma electrónica.",
    "signature_several_keys": (
        "El archivo trae más de una clave privada, y no podemos saber cuál es "
        "la de tu firma electrónica. Exporta de nuevo solo la firma del "
        "representante legal, como archivo .pfx o .p12."
    ),
    "signature_wrong_password": (
        "La contraseña de la firma electrónica no es correcta. Revisa las "
        "mayúsculas y minúsculas. Si la olvidaste, no es posible recuperarla: "
        "tendrás que comprar una firma electrónica nueva a tu entidad "
        "certificadora. Si estás seguro de la contraseña, el archivo puede "
        "estar dañado: expórtalo de nuevo desde tu computador."
    ),
    "signature_damaged": (
        "La contraseña es correcta, pero el archivo de la firma electrónica "
        "está dañado por dentro y no se puede leer. No necesitas comprar una "
        "firma nueva: expórtala otra vez desde el computador donde la tienes "
        "instalada, o pide el archivo de nuevo a tu entidad certificadora."
    ),
    "signature_no_key": (
        "El archivo trae solo el certificado, sin la clave privada, y sin ella "
        "no se puede firmar. Exporta la firma de nuevo incluyendo la clave "
        "privada, como archivo .pfx o .p12."
    ),
    "signature_no_certificate": (
        "El archivo trae la clave privada, pero no el certificado de la firma. "
        "Exporta la firma de nuevo incluyendo el certificado."
    ),
    "signature_key_mismatch": (
        "La clave privada del archivo no corresponde a su certificado. Exporta "
        "la firma de nuevo desde el equipo donde la tienes instalada."
    ),
    "signature_no_rut": (
        "El certificado no indica un RUT válido de su titular, así que no sirve "
        "para emitir documentos ante el SII. Usa una firma electrónica emitida "
        "en Chile a nombre del representante legal."
    ),
    "signature_sealed_unreadable": (
        "No pudimos abrir la firma electrónica guardada. Vuelve a subirla para "
        "continuar."
    ),
}

_PEM_MESSAGE = (
    "El archivo está en formato de texto (PEM), como un certificado .pem o "
    ".crt. Sube la firma electrónica en formato .pfx o .p12, que incluye el "
    "certificado y su clave privada."
)
_ZIP_MESSAGE = (
    "El archivo es un .zip. Descomprímelo y sube la firma electrónica (.pfx o "
    ".p12) que viene adentro."
)

# The passwords of PKCS#12 files are short; a longer one cannot be right and
# would only make the key derivation spend time.
_MAX_PASSWORD_LENGTH = 1024


_PASSWORD_CODES = ("signature_wrong_password", "signature_password_missing")


def _error(code: str, message: str | None = None) -> SignatureError:
    field = "signature_password" if code in _PASSWORD_CODES else "signature"
    return SignatureError(message or _MESSAGES[code], code=code, field=field)


def _date(moment: datetime) -> str:
    """The calendar day of ``moment`` in Chile."""
    return f"{moment.astimezone(SANTIAGO):%d-%m-%Y}"


_UNITS = ((1024 * 1024, "MB"), (1024, "KB"), (0, "bytes"))


def _spanish_number(value: float, decimals: int) -> str:
    text = f"{value:,.{decimals}f}"
    if decimals:
        text = text.rstrip("0").rstrip(".")
    # 1,234.5 in English is 1.234,5 in Spanish.
    return text.translate(str.maketrans(",.", ".,"))


def format_size(count: int, *, other: int | None = None) -> str:
    """``count`` bytes as a Chilean reader reads them: ``1 MB``, ``1,05 MB``,
    ``350 KB`` (1 MB is 1.048.576 bytes, 1 KB is 1.024).

    With ``other``, both are written in the unit of the larger one and with
    enough decimals (up to three, then in bytes) that two different sizes
    never read equal, so "pesa X; el máximo es Y" cannot contradict itself.
    """
    largest = max(count, other or 0)
    unit, name = next((u, n) for u, n in _UNITS if largest >= u)
    if unit:
        for decimals in (1, 2, 3):
            text = _spanish_number(count / unit, decimals)
            if other is None or other == count:
                return f"{text} {name}"
            if text != _spanish_number(other / unit, decimals):
                return f"{text} {name}"
    return f"{_spanish_number(count, 0)} bytes"


# --- The shape of the file ---------------------------------------------------
#
# A PFX (RFC 7292) is a DER SEQUENCE { version INTEGER 3, authSafe ContentInfo,
# macData OPTIONAL }, and the ContentInfo starts with its content type OID.
# Those first bytes tell a PFX from anything else; then walking the whole
# tag-length-value tree tells a complete file from a truncated or damaged one,
# which ``cryptography`` would report as a wrong password.

_VERSION_3 = bytes.fromhex("020103")
_AUTH_SAFE_TYPES = tuple(
    bytes.fromhex("06092a864886f70d0107" + suffix)
    # data (the usual password mode), signedData (the public-key mode) and
    # encryptedData (written by some old exporters).
    for suffix in ("01", "02", "06")
)
_MAX_DEPTH = 32


class _Foreign(Exception):
    """The bytes are something other than a PFX."""


class _Truncated(Exception):
    """The bytes start like a PFX but end before its first fields do."""


class _Malformed(Exception):
    """The bytes break the tag-length-value framing."""


def _prefix_header(data: bytes, pos: int, tag: int) -> tuple[int, int | None]:
    """Content start and length of the element at ``pos``, which must be ``tag``."""
    if pos >= len(data):
        raise _Truncated
    if data[pos] != tag:
        raise _Foreign
    if pos + 1 >= len(data):
        raise _Truncated

    first = data[pos + 1]
    if first < 0x80:
        return pos + 2, first
    if first == 0x80:
        return pos + 2, None
    count = first & 0x7F
    if count > 4:
        raise _Foreign
    if pos + 2 + count > len(data):
        raise _Truncated
    return pos + 2 + count, int.from_bytes(data[pos + 2 : pos + 2 + count], "big")


def _prefix_expect(data: bytes, pos: int, options: tuple[bytes, ...]) -> int:
    """The position after whichever of ``options`` the data holds at ``pos``."""
    for option in options:
        if data[pos : pos + len(option)] == option:
            return pos + len(option)
    rest = data[pos:]
    if any(len(rest) < len(option) and option.startswith(rest) for option in options):
        raise _Truncated
    raise _Foreign


def _header(data: bytes, pos: int, end: int) -> tuple[bool, int, int | None]:
    """Whether the element at ``pos`` is constructed, its content start and
    its content length (``None`` for BER's indefinite length)."""
    if pos >= end:
        raise _Malformed
    constructed = bool(data[pos] & 0x20)
    high_tag = data[pos] & 0x1F == 0x1F
    pos += 1
    while high_tag:
        if pos >= end:
            raise _Malformed
        high_tag = bool(data[pos] & 0x80)
        pos += 1

    if pos >= end:
        raise _Malformed
    first = data[pos]
    pos += 1
    if first < 0x80:
        return constructed, pos, first
    if first == 0x80:
        return constructed, pos, None
    count = first & 0x7F
    if count > 4 or pos + count > end:
        raise _Malformed
    return constructed, pos + count, int.from_bytes(data[pos : pos + count], "big")


def _skip(data: bytes, pos: int, end: int, depth: int = 0) -> int:
    """The position after the element at ``pos``, checking all it contains."""
    if depth > _MAX_DEPTH:
        raise _Malformed
    constructed, start, length = _header(data, pos, end)

    if length is None:
        if not constructed:
            raise _Malformed
        pos = start
        while data[pos : min(pos + 2, end)] != b"\x00\x00":
            pos = _skip(data, pos, end, depth + 1)
        return pos + 2

    stop = start + length
    if stop > end:
        raise _Malformed
    if constructed:
        pos = start
        while pos < stop:
            pos = _skip(data, pos, stop, depth + 1)
    return stop


def _foreign_error(data: bytes) -> SignatureError:
    head = data[:64].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"-----BEGIN"):
        return _error("signature_not_pkcs12", _PEM_MESSAGE)
    if head.startswith(b"PK\x03\x04"):
        return _error("signature_not_pkcs12", _ZIP_MESSAGE)
    return _error("signature_not_pkcs12")


def _check_shape(data: bytes) -> int:
    """Raise ``signature_not_pkcs12`` or ``signature_corrupt`` unless ``data``
    starts with one complete PFX structure; return where that ends.

    Bytes after it (a newline or NULs added by a mail client or a copy) are
    left out, as OpenSSL and ``cryptography`` leave them.
    """
    try:
        start, _ = _prefix_header(data, 0, 0x30)
        pos = _prefix_expect(data, start, (_VERSION_3,))
        start, _ = _prefix_header(data, pos, 0x30)
        _prefix_expect(data, start, _AUTH_SAFE_TYPES)
    except _Foreign:
        raise _foreign_error(data) from None
    except _Truncated:
        raise _error("signature_corrupt") from None

    try:
        return _skip(data, 0, len(data))
    except _Malformed:
        raise _error("signature_corrupt") from None


def _as_der(data: bytes) -> bytes:
    """``data`` (a complete PFX) in DER: BER's open-ended lengths, which
    ``cryptography`` only reads with a warning it may one day turn into an
    error, are rewritten. The MAC covers the content, not its framing, so
    it still holds. Data that asn1crypto cannot rewrite is returned as is."""
    if data[1] != 0x80:
        return data
    try:
        der: bytes = asn1_pkcs12.Pfx.load(data).dump(force=True)
    except Exception:
        return data
    return der


# --- How much work opening asks for -----------------------------------------

#: Key-derivation rounds a file may ask for. Real files ask 2,000 to 100,000;
#: a file asking for billions would hold the server for minutes.
MAX_ITERATIONS = 600_000

# Algorithm identifiers followed by (salt, iterations): the PKCS#12 PBE
# schemes (1.2.840.113549.1.12.1.*) and PBKDF2 (1.2.840.113549.1.5.12).
_PBE_OIDS = (
    bytes.fromhex("060a2a864886f70d010c01"),
    bytes.fromhex("06092a864886f70d01050c"),
)


def _integer_after_salt(data: bytes, pos: int) -> int | None:
    """The INTEGER after an OCTET STRING in the SEQUENCE at ``pos``."""
    try:
        _, start, length = _header(data, pos, len(data))
        if data[pos] != 0x30:
            return None
        if data[start] != 0x04:
            return None
        end = start + length if length is not None else len(data)
        after_salt = _skip(data, start, end)
        if data[after_salt] != 0x02:
            return None
        _, value_start, value_length = _header(data, after_salt, len(data))
        if value_length is None or value_length > 8:
            # A count too long to read is a count too large to run.
            return MAX_ITERATIONS + 1
        return int.from_bytes(data[value_start : value_start + value_length], "big")
    except (_Malformed, IndexError):
        return None


def _iteration_counts(data: bytes) -> list[int]:
    """Every iteration count the file declares in clear: its MAC's and its
    encryption schemes' (the encrypted parts cannot hide one we must use)."""
    counts = []
    for oid in _PBE_OIDS:
        pos = data.find(oid)
        while pos != -1:
            # A PKCS#12 scheme's OID has one more byte (the scheme's number);
            # PBKDF2's parameters follow its OID directly.
            params = pos + len(oid) + (1 if oid[1] == 0x0A else 0)
            found = _integer_after_salt(data, params)
            if found is not None:
                counts.append(found)
            pos = data.find(oid, pos + 1)

    # The MAC: PFX ::= SEQUENCE { version, authSafe, macData }. BER's
    # open-ended lengths are read too: a count we cannot read is refused.
    try:
        _, start, length = _header(data, 0, len(data))
        end = start + length if length is not None else len(data) - 2
        pos = _skip(data, start, end)  # version
        pos = _skip(data, pos, end)  # authSafe
        if pos < end:
            _, mac_start, mac_length = _header(data, pos, end)
            mac_end = mac_start + mac_length if mac_length is not None else end
            after_digest = _skip(data, mac_start, mac_end)
            after_salt = _skip(data, after_digest, mac_end)
            if after_salt < mac_end and data[after_salt] == 0x02:
                _, value_start, value_length = _header(data, after_salt, mac_end)
                if value_length is not None and value_length > 8:
                    counts.append(MAX_ITERATIONS + 1)
                elif value_length is not None:
                    counts.append(
                        int.from_bytes(
                            data[value_start : value_start + value_length], "big"
                        )
                    )
    except (_Malformed, IndexError):
        counts.append(MAX_ITERATIONS + 1)
    return counts


#: Key derivations a file may declare. Real files declare three (the MAC, the
#: key, the certificates); each can cost ``MAX_ITERATIONS``.
MAX_DERIVATIONS = 8


def _check_work(data: bytes) -> None:
    counts = _iteration_counts(data)
    if len(counts) > MAX_DERIVATIONS or any(c > MAX_ITERATIONS for c in counts):
        raise _error(
            "signature_unsupported",
            "La firma electrónica usa una protección fuera de lo habitual y no "
            "podemos abrirla. Exporta de nuevo el archivo .pfx o .p12 desde tu "
            "computador o pide uno nuevo a tu entidad certificadora.",
        )


# --- Opening the file --------------------------------------------------------

_Contents = tuple[
    PrivateKeyTypes | None, x509.Certificate | None, list[x509.Certificate]
]


def _password_candidates(password: str) -> list[bytes]:
    if len(password) > _MAX_PASSWORD_LENGTH:
        return []
    try:
        encoded = password.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate cannot be typed into a file's password.
        return []
    if b"\x00" in encoded:
        # OpenSSL ends a password at its first NUL, so no file has one (and
        # cryptography panics on it, echoing the password to stderr).
        return []
    if password.isascii():
        return [encoded]
    # OpenSSL before 1.1.0 took each byte of the password as one character, so
    # files it wrote with accents or ñ only open with that reading.
    return [encoded, encoded.decode("latin-1").encode("utf-8")]


def _pkcs12_load(data: bytes, password: bytes) -> _Contents:
    """``cryptography``'s loader, without its warning that a file is BER
    (printed to stderr, or raised under ``-W error``)."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="PKCS#12 bundle could not be parsed as DER"
        )
        return pkcs12.load_key_and_certificates(data, password)


def _open(data: bytes, password: str) -> _Contents:
    candidates = _password_candidates(password)
    for candidate in candidates:
        try:
            return _pkcs12_load(data, candidate)
        except ValueError:
            # cryptography says the same for a wrong password and for damaged
            # content: which one it was is found out below.
            continue
    parts = _encrypted_parts(data)
    if any(_opens(part, candidate) for part in parts for candidate in candidates):
        raise _error("signature_damaged")
    if not password:
        # The file has a password and the customer typed none.
        raise _error("signature_password_missing")
    raise _error("signature_wrong_password")


def _key_bags(data: bytes) -> int:
    """How many private keys the file's clear parts hold (their bags are
    listed in clear even when each key is encrypted)."""
    count = 0
    try:
        pfx = asn1_pkcs12.Pfx.load(data)
        if pfx["auth_safe"]["content_type"].native != "data":
            return 0
        for part in pfx.authenticated_safe:
            if part["content_type"].native != "data":
                continue
            bags = asn1_pkcs12.SafeContents.load(part["content"].native)
            count += sum(
                bag["bag_id"].native in ("key_bag", "pkcs8_shrouded_key_bag")
                for bag in bags
            )
    except Exception:
        return count
    return count


# --- Telling a damaged file from a wrong password ----------------------------
#
# The file's MAC covers every encrypted part, so damage anywhere inside fails
# it exactly as a wrong password does. But each encrypted part can also be
# opened on its own: a file repacked around that one part, without a MAC, is
# handed to cryptography (its own key derivation and ciphers do the work).
# A part that opens proves the password right (a wrong one leaves a part
# undecryptable, or decrypted to noise that does not parse), so the file is
# damaged. A file whose only encrypted part is the damaged one, or whose MAC
# is the only check, still reads as a wrong password: nothing can tell.

#: Encrypted parts tried on their own; real files have two (the key and the
#: certificates), and ``_check_work`` bounds what each one costs.
_MAX_PARTS = 4


def _alone(part: asn1_cms.ContentInfo) -> bytes:
    """A PFX, without MAC, holding only ``part``."""
    safe = asn1_pkcs12.AuthenticatedSafe([part])
    content = asn1_cms.ContentInfo({"content_type": "data", "content": safe.dump()})
    alone: bytes = asn1_pkcs12.Pfx({"version": "v3", "auth_safe": content}).dump()
    return alone


def _is_encrypted(part: asn1_cms.ContentInfo) -> bool:
    kind = part["content_type"].native
    if kind == "encrypted_data":
        return True
    if kind != "data":
        return False
    bags = asn1_pkcs12.SafeContents.load(part["content"].native)
    return any(bag["bag_id"].native == "pkcs8_shrouded_key_bag" for bag in bags)


def _encrypted_parts(data: bytes) -> list[bytes]:
    """Each password-encrypted part of the PFX ``data``, as a PFX of its own.

    asn1crypto raises many types on bad input: a part that does not parse
    is left out, and a file whose outer structure does not has none.
    """
    parts: list[bytes] = []
    try:
        pfx = asn1_pkcs12.Pfx.load(data)
        if pfx["auth_safe"]["content_type"].native != "data":
            return parts
        for part in pfx.authenticated_safe:
            try:
                if _is_encrypted(part):
                    parts.append(_alone(part))
            except Exception:  # noqa: S112 - a damaged part is skipped
                continue
            if len(parts) >= _MAX_PARTS:
                break
    except Exception:
        return parts
    return parts


def _opens(part: bytes, password: bytes) -> bool:
    try:
        _pkcs12_load(part, password)
    except ValueError:
        return False
    return True


def _public_der(key: PrivateKeyTypes | x509.Certificate) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER,
        serialization.PublicFormat.SubjectPublicKeyInfo,
    )


def _holder_certificate(
    key: PrivateKeyTypes,
    certificate: x509.Certificate | None,
    others: list[x509.Certificate],
) -> x509.Certificate:
    """The certificate of ``key`` among those in the file.

    A file whose bags lack the ``localKeyID`` that pairs them leaves the
    holder's certificate among the others, so all are searched.
    """
    candidates = [cert for cert in (certificate, *others) if cert is not None]
    if not candidates:
        raise _error("signature_no_certificate")

    wanted = _public_der(key)
    for candidate in candidates:
        if _public_der(candidate) == wanted:
            return candidate
    raise _error("signature_key_mismatch")


def _decode_der_string(value: bytes) -> str | None:
    """The text of a DER IA5String, PrintableString or UTF8String."""
    if len(value) < 2 or value[0] not in (0x16, 0x13, 0x0C):
        return None
    try:
        _, start, length = _header(value, 0, len(value))
    except _Malformed:
        return None
    if length is None or start + length != len(value):
        return None

    encoding = "utf-8" if value[0] == 0x0C else "ascii"
    try:
        return value[start:].decode(encoding)
    except UnicodeDecodeError:
        return None


def _holder_rut(certificate: x509.Certificate) -> Rut:
    try:
        extension = certificate.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        )
    except x509.ExtensionNotFound:
        raise _error("signature_no_rut") from None

    for name in extension.value.get_values_for_type(x509.OtherName):
        if name.type_id != HOLDER_RUT_OID:
            continue
        text = _decode_der_string(name.value)
        if text is None:
            break
        try:
            return Rut.parse(text)
        except RutError:
            break
    raise _error("signature_no_rut")


def _name_part(name: x509.Name, *oids: x509.ObjectIdentifier) -> str:
    for oid in oids:
        for attribute in name.get_attributes_for_oid(oid):
            value = attribute.value
            text = value if isinstance(value, str) else value.decode("utf-8", "replace")
            if text.strip():
                return text.strip()
    return name.rfc4514_string()


def _check_dates(certificate: x509.Certificate, now: datetime) -> None:
    not_before = certificate.not_valid_before_utc
    not_after = certificate.not_valid_after_utc
    if now > not_after:
        raise _error(
            "signature_expired",
            f"La firma electrónica venció el {_date(not_after)} (era válida "
            f"desde el {_date(not_before)}). Para continuar necesitas una firma "
            "vigente: renuévala con tu entidad certificadora.",
        )
    if now < not_before:
        raise _error(
            "signature_not_yet_valid",
            "La firma electrónica todavía no está vigente: es válida desde el "
            f"{_date(not_before)} hasta el {_date(not_after)}. Súbela de nuevo "
            f"a partir del {_date(not_before)}.",
        )


def _expiry_warning(not_after: datetime, now: datetime, days: int) -> str | None:
    # Calendar days in Chile: what the customer's own calendar shows.
    left = (
        not_after.astimezone(SANTIAGO).date() - now.astimezone(SANTIAGO).date()
    ).days
    if left > days:
        return None
    if left <= 0:
        when = "hoy"
    elif left == 1:
        when = "mañana"
    else:
        when = f"en {left} días"
    return (
        f"La firma electrónica vence el {_date(not_after)}, {when}. Renuévala "
        "a tiempo con tu entidad certificadora para no interrumpir la emisión "
        "de documentos."
    )


# --- The public face ---------------------------------------------------------


def _aware(value: object) -> datetime:
    if not isinstance(value, str):
        raise ValueError("dates must be ISO 8601 strings")
    moment = datetime.fromisoformat(value)
    if moment.utcoffset() is None:
        raise ValueError("dates must carry their UTC offset")
    return moment


def _text(data: Mapping[str, object], key: str) -> str:
    value = data[key]
    if not isinstance(value, str):
        raise ValueError(f"{key} must be a string")
    return value


@attrs.frozen
class SignatureInfo:
    """What a page, a log or the certification service may know of a signature.

    Holds no key material. ``serial`` is the certificate's serial number in
    uppercase hexadecimal; ``fingerprint_sha256`` is the SHA-256 of its DER,
    in lowercase hexadecimal; dates are timezone-aware. ``warnings`` are
    Spanish sentences for the customer, such as a close expiry date.
    """

    holder_name: str
    holder_rut: Rut | None
    issuer: str
    serial: str
    not_before: datetime
    not_after: datetime
    fingerprint_sha256: str
    warnings: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, str | list[str] | None]:
        """A JSON-safe dict: the RUT in canonical form, dates in ISO 8601."""
        return {
            "holder_name": self.holder_name,
            "holder_rut": None if self.holder_rut is None else str(self.holder_rut),
            "issuer": self.issuer,
            "serial": self.serial,
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "fingerprint_sha256": self.fingerprint_sha256,
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> SignatureInfo:
        """The inverse of ``as_dict``; raises ``ValueError`` on anything else."""
        try:
            rut = data["holder_rut"]
            warnings = data.get("warnings", [])
            if not isinstance(warnings, list | tuple) or not all(
                isinstance(item, str) for item in warnings
            ):
                raise ValueError("warnings must be a list of strings")
            return cls(
                holder_name=_text(data, "holder_name"),
                holder_rut=None
                if rut is None
                else Rut.parse(_text(data, "holder_rut")),
                issuer=_text(data, "issuer"),
                serial=_text(data, "serial"),
                not_before=_aware(data["not_before"]),
                not_after=_aware(data["not_after"]),
                fingerprint_sha256=_text(data, "fingerprint_sha256"),
                warnings=tuple(warnings),
            )
        except KeyError as exc:
            raise ValueError(f"missing {exc.args[0]}") from None


@attrs.frozen
class LoadedSignature:
    """A signature ready to sign with. Its key never shows in ``repr``."""

    info: SignatureInfo
    private_key: PrivateKeyTypes = attrs.field(repr=False, eq=False)
    certificate: x509.Certificate


def load_signature(
    data: bytes,
    password: str,
    *,
    now: datetime,
    expected_rut: Rut | None = None,
    max_bytes: int = 1_048_576,
    expiry_warning_days: int = 30,
) -> LoadedSignature:
    """Open an uploaded PKCS#12 file and check that it can sign for the SII.

    ``now`` must be timezone-aware. Raises ``SignatureError`` with one of the
    codes ``signature_empty``, ``signature_too_large``,
    ``signature_not_pkcs12``, ``signature_corrupt``,
    ``signature_unsupported``, ``signature_wrong_password``,
    ``signature_damaged`` (the password is right, the file damaged inside),
    ``signature_no_key``, ``signature_no_certificate``,
    ``signature_key_mismatch``, ``signature_expired``,
    ``signature_not_yet_valid``, ``signature_no_rut`` and
    ``signature_rut_mismatch`` (when ``expected_rut`` is given), and
    never another exception for any ``data``. A certificate that expires
    within ``expiry_warning_days`` loads, with a warning in ``info.warnings``.
    """
    if now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")

    if not data:
        raise _error("signature_empty")
    if len(data) > max_bytes:
        raise _error(
            "signature_too_large",
            f"El archivo pesa {format_size(len(data), other=max_bytes)}; el "
            f"máximo es {format_size(max_bytes, other=len(data))}. Una firma "
            "electrónica pesa unos pocos KB: revisa que sea el archivo .pfx o "
            ".p12 de tu firma.",
        )

    try:
        return _load(
            bytes(data),
            password,
            now=now,
            expected_rut=expected_rut,
            expiry_warning_days=expiry_warning_days,
        )
    except SignatureError:
        raise
    except Exception as exc:
        raise _error("signature_corrupt") from exc


def _load(
    data: bytes,
    password: str,
    *,
    now: datetime,
    expected_rut: Rut | None,
    expiry_warning_days: int,
) -> LoadedSignature:
    data = _as_der(data[: _check_shape(data)])
    _check_work(data)
    key, certificate, others = _open(data, password)

    if key is None:
        raise _error("signature_no_key")
    if _key_bags(data) > 1:
        raise _error("signature_several_keys")
    certificate = _holder_certificate(key, certificate, others)
    if not isinstance(key, rsa.RSAPrivateKey):
        # The SII's electronic documents are signed with RSA (XML-DSig).
        raise _error(
            "signature_unsupported",
            "La firma electrónica usa un tipo de clave que el SII no acepta "
            "para documentos tributarios (se requiere RSA). Pide a tu entidad "
            "certificadora una firma electrónica para facturación.",
        )

    _check_dates(certificate, now)
    holder_rut = _holder_rut(certificate)
    if expected_rut is not None and holder_rut != expected_rut:
        raise _error(
            "signature_rut_mismatch",
            f"La firma electrónica es del RUT {holder_rut.formatted()} y no del "
            f"RUT {expected_rut.formatted()} que indicaste para el representante "
            "legal. Sube la firma electrónica del representante legal, o corrige "
            "su RUT si lo escribiste mal.",
        )

    not_after = certificate.not_valid_after_utc
    warning = _expiry_warning(not_after, now, expiry_warning_days)
    info = SignatureInfo(
        holder_name=_name_part(certificate.subject, NameOID.COMMON_NAME),
        holder_rut=holder_rut,
        issuer=_name_part(
            certificate.issuer, NameOID.COMMON_NAME, NameOID.ORGANIZATION_NAME
        ),
        serial=f"{certificate.serial_number:X}",
        not_before=certificate.not_valid_before_utc,
        not_after=not_after,
        fingerprint_sha256=certificate.fingerprint(hashes.SHA256()).hex(),
        warnings=() if warning is None else (warning,),
    )
    return LoadedSignature(info=info, private_key=key, certificate=certificate)


# --- Sealing at rest ---------------------------------------------------------

# Version 1: 4-byte big-endian length of the PKCS#8 DER key, the key, then the
# certificate's DER.
_SEAL_MAGIC = b"HOS\x01"


class SignatureSealer:
    """Encrypt a loaded signature's key and certificate for storage.

    ``keys`` are Fernet keys (``generate_key()`` makes one). The first seals;
    every one of them opens, so a key is rotated by putting the new one first
    and keeping the old ones until their blobs are sealed again.
    """

    def __init__(self, keys: Sequence[str]) -> None:
        if isinstance(keys, str):
            raise TypeError("keys is a sequence of Fernet keys, not one key")
        if not keys:
            raise ValueError("SignatureSealer needs at least one key")
        self._fernet = MultiFernet([Fernet(key) for key in keys])

    @staticmethod
    def generate_key() -> str:
        """A new random Fernet key, as text fit for configuration."""
        return Fernet.generate_key().decode("ascii")

    def seal(self, signature: LoadedSignature) -> bytes:
        """An encrypted, authenticated blob of the key and the certificate."""
        key = signature.private_key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        certificate = signature.certificate.public_bytes(serialization.Encoding.DER)
        payload = _SEAL_MAGIC + len(key).to_bytes(4, "big") + key + certificate
        return self._fernet.encrypt(payload)

    def reseal(self, sealed: bytes) -> bytes:
        """``sealed`` sealed again under the first key, so that an older key
        can be retired once every stored blob went through here."""
        try:
            return self._fernet.rotate(sealed)
        except (InvalidToken, TypeError):
            raise _error("signature_sealed_unreadable") from None

    def open(self, sealed: bytes) -> tuple[PrivateKeyTypes, x509.Certificate]:
        """The key and certificate of a blob from ``seal``.

        Raises ``SignatureError`` (``signature_sealed_unreadable``) when no
        key opens it or it was altered.
        """
        try:
            payload = self._fernet.decrypt(sealed)
        except (InvalidToken, TypeError):
            raise _error("signature_sealed_unreadable") from None

        try:
            return _unpack(payload)
        except Exception:
            raise _error("signature_sealed_unreadable") from None


def _unpack(payload: bytes) -> tuple[PrivateKeyTypes, x509.Certificate]:
    if not payload.startswith(_SEAL_MAGIC):
        raise ValueError("unknown sealed format")
    start = len(_SEAL_MAGIC) + 4
    length = int.from_bytes(payload[len(_SEAL_MAGIC) : start], "big")
    if start + length > len(payload):
        raise ValueError("sealed payload is short")
    # The key was checked when the file was loaded, and Fernet authenticated
    # the blob: checking an RSA key again costs ~40 ms and proves nothing new.
    key = serialization.load_der_private_key(
        payload[start : start + length], None, unsafe_skip_rsa_key_validation=True
    )
    certificate = x509.load_der_x509_certificate(payload[start + length :])
    return key, certificate
