"""Link tokens alone: purpose, expiry, clock skew, key rotation, tampering."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from haulmer_onboarding import LinkExpired, LinkInvalid, LinkWrongPurpose, Purpose
from haulmer_onboarding.tokens import DEFAULT_MAX_AGES, LinkSigner


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def test_a_link_is_refused_by_every_other_purpose() -> None:
    signer = LinkSigner(["k1"])
    token, claims = signer.issue(Purpose.CREATE_PASSWORD)
    assert signer.read(token, Purpose.CREATE_PASSWORD) == claims
    for purpose in DEFAULT_MAX_AGES:
        if purpose != Purpose.CREATE_PASSWORD:
            with pytest.raises(LinkWrongPurpose):
                signer.read(token, purpose)


def test_expiry_is_per_purpose_and_configurable() -> None:
    clock = Clock()
    signer = LinkSigner(
        ["k1"], max_ages={Purpose.START_SETUP: timedelta(hours=1)}, clock=clock
    )
    password, _ = signer.issue(Purpose.CREATE_PASSWORD)
    setup, _ = signer.issue(Purpose.START_SETUP)
    clock.now += timedelta(hours=2)
    signer.read(password, Purpose.CREATE_PASSWORD)
    with pytest.raises(LinkExpired) as info:
        signer.read(setup, Purpose.START_SETUP)
    assert info.value.code == "link_expired"
    clock.now += timedelta(days=3)
    with pytest.raises(LinkExpired):
        signer.read(password, Purpose.CREATE_PASSWORD)


def test_a_host_slightly_ahead_is_tolerated_the_far_future_is_not() -> None:
    ahead, here = Clock(), Clock()
    ahead.now += timedelta(seconds=20)
    token, _ = LinkSigner(["k1"], clock=ahead).issue(Purpose.CREATE_PASSWORD)
    LinkSigner(["k1"], clock=here).read(token, Purpose.CREATE_PASSWORD)

    ahead.now += timedelta(days=1)
    future, _ = LinkSigner(["k1"], clock=ahead).issue(Purpose.CREATE_PASSWORD)
    with pytest.raises(LinkInvalid):
        LinkSigner(["k1"], clock=here).read(future, Purpose.CREATE_PASSWORD)


def test_the_first_key_signs_and_older_keys_only_verify() -> None:
    old_token, _ = LinkSigner(["old"]).issue(Purpose.CREATE_PASSWORD)
    rotated = LinkSigner(["new", "old"])
    rotated.read(old_token, Purpose.CREATE_PASSWORD)

    new_token, _ = rotated.issue(Purpose.CREATE_PASSWORD)
    LinkSigner(["new"]).read(new_token, Purpose.CREATE_PASSWORD)
    with pytest.raises(LinkInvalid):
        LinkSigner(["old"]).read(new_token, Purpose.CREATE_PASSWORD)


@pytest.mark.parametrize(
    "mangle",
    [
        # Inside the signature: its last character has bits base64 ignores.
        lambda t: t[:-5] + ("A" if t[-5] != "A" else "B") + t[-4:],
        lambda t: t.replace(".", "", 1),
        lambda t: t[: len(t) // 2],
        lambda t: "",
        lambda t: "x" * 400,
    ],
)
def test_mangled_links_are_invalid(mangle: object) -> None:
    signer = LinkSigner(["k1"])
    token, _ = signer.issue(Purpose.CREATE_PASSWORD)
    with pytest.raises(LinkInvalid):
        signer.read(mangle(token), Purpose.CREATE_PASSWORD)  # type: ignore[operator]


def test_surrounding_whitespace_from_a_copied_link_is_ignored() -> None:
    signer = LinkSigner(["k1"])
    token, _ = signer.issue(Purpose.CREATE_PASSWORD)
    signer.read(f"  {token}\n", Purpose.CREATE_PASSWORD)


def test_no_key_is_refused() -> None:
    with pytest.raises(ValueError, match="secret key"):
        LinkSigner([])
