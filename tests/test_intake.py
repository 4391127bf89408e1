"""The purchase webhook over real HTTP: a signed purchase starts one journey,
a repeated delivery starts nothing new, and a request that is not signed
right, or signed too long ago, is refused, logged and changes nothing."""

from __future__ import annotations

import json
import logging
import secrets
import threading
from collections.abc import Iterator
from typing import Any

import attrs
import httpx
import pytest
from cryptography.fernet import Fernet

from haulmer_onboarding import NotFoundError, Onboarding, Settings
from haulmer_onboarding.cli import SUBJECTS
from haulmer_onboarding.testing.clock import MovableClock
from haulmer_onboarding.testing.scenarios import purchase_for
from haulmer_onboarding.testing.servers import RunningServer, serve_in_thread
from haulmer_onboarding.testing.smtp import SmtpCatcher
from haulmer_onboarding.testing.webhooks import (
    PATH,
    encode,
    post_purchase,
    signed_headers,
    webhook_body,
)
from haulmer_onboarding.web import create_app
from haulmer_onboarding.web.intake import MAX_BODY_BYTES, SIGNATURE_HEADER, sign

BUYER = "compras@ferreteria-los-andes.cl"
SECRET = "whsec_" + secrets.token_urlsafe(24)
OLD_SECRET = "whsec_" + secrets.token_urlsafe(24)


@attrs.define
class Shop:
    """The deployment's web app on a real socket, seen from a shop."""

    onboarding: Onboarding
    server: RunningServer
    catcher: SmtpCatcher
    clock: MovableClock

    @property
    def url(self) -> str:
        return self.server.url + PATH

    def post(self, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return httpx.post(self.url, content=body, headers=headers)

    def deliver(self) -> int:
        relay, sent = self.onboarding.relay(), 0
        while count := relay.deliver_pending():
            sent += count
        return sent


@pytest.fixture
def shop(settings: Settings, catcher: SmtpCatcher) -> Iterator[Shop]:
    clock = MovableClock()
    configured = attrs.evolve(
        settings, webhook_secrets=(SECRET, OLD_SECRET), clock=clock
    )
    onboarding = Onboarding(configured)
    onboarding.create_tables()
    with serve_in_thread(create_app(onboarding)) as server:
        yield Shop(onboarding, server, catcher, clock)
    onboarding.close()


def now(shop: Shop) -> int:
    return int(shop.clock().timestamp())


def assert_nothing_recorded(shop: Shop, order_number: str) -> None:
    with pytest.raises(NotFoundError):
        shop.onboarding.journey_by_order(order_number)
    assert shop.deliver() == 0
    assert shop.catcher.messages == []


def error_of(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"] == "application/json"
    error: dict[str, Any] = response.json()["error"]
    return error


def test_a_signed_purchase_starts_a_journey_whose_emails_arrive(shop: Shop) -> None:
    purchase = purchase_for("simple", BUYER, "OC-5001")
    response = post_purchase(shop.server.url, purchase, SECRET, timestamp=now(shop))

    assert response.status_code == 201
    answer = response.json()
    journey = shop.onboarding.journey_by_order("OC-5001")
    assert answer == {
        "journey_id": journey.id,
        "order_number": "OC-5001",
        "stage": "setup_pending",
        "created": True,
    }
    assert journey.organization is not None
    assert journey.organization.rut == "76086428-5"

    assert shop.deliver() == 5
    subjects = {m.subject for m in shop.catcher.messages}
    assert {SUBJECTS["purchase"], SUBJECTS["payment"], SUBJECTS["setup"]} <= subjects
    assert all(m.rcpt_tos == (BUYER,) for m in shop.catcher.messages)


def test_the_same_purchase_twice_is_one_journey_and_one_set_of_emails(
    shop: Shop,
) -> None:
    body = encode(purchase_for("razon-social", BUYER, "OC-5002"))
    # The shop's retry sends the very same request: same bytes, same header.
    headers = signed_headers(body, SECRET, now(shop))

    first = shop.post(body, headers)
    second = shop.post(body, headers)

    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json() == {**first.json(), "created": False}
    assert shop.deliver() == 5

    # A third delivery after the emails went out sends nothing either.
    third = post_purchase(shop.server.url, body, SECRET, timestamp=now(shop))
    assert third.status_code == 200
    assert shop.deliver() == 0
    ids = [m.message["Message-ID"] for m in shop.catcher.messages]
    assert len(ids) == len(set(ids)) == 5
    kinds = [e.kind for e in shop.onboarding.events(first.json()["journey_id"])]
    assert kinds.count("purchase_recorded") == 1


def test_concurrent_deliveries_of_one_purchase_start_one_journey(shop: Shop) -> None:
    body = encode(purchase_for("simple", BUYER, "OC-5003"))
    headers = signed_headers(body, SECRET, now(shop))
    answers: list[httpx.Response] = []
    start = threading.Barrier(8)

    def deliver() -> None:
        start.wait()
        answers.append(shop.post(body, headers))

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(a.status_code for a in answers) == [200] * 7 + [201]
    assert len({a.json()["journey_id"] for a in answers}) == 1
    assert shop.deliver() == 5


def test_a_bad_signature_is_refused_logged_and_changes_nothing(
    shop: Shop, caplog: pytest.LogCaptureFixture
) -> None:
    body = encode(purchase_for("simple", BUYER, "OC-5004"))
    forged = signed_headers(body, "whsec_" + secrets.token_urlsafe(24), now(shop))

    with caplog.at_level(logging.INFO, logger="haulmer_onboarding"):
        response = shop.post(body, forged)

    assert response.status_code == 401
    assert error_of(response)["code"] == "signature_invalid"
    refused = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refused) == 1
    assert refused[0].levelno == logging.WARNING
    assert "signature_invalid" in refused[0].getMessage()
    logged = caplog.text
    assert forged[SIGNATURE_HEADER] not in logged
    assert forged[SIGNATURE_HEADER].split("v1=")[1] not in logged
    assert SECRET not in logged
    assert OLD_SECRET not in logged
    assert_nothing_recorded(shop, "OC-5004")


def test_a_body_changed_after_signing_is_refused(shop: Shop) -> None:
    original = encode(purchase_for("simple", BUYER, "OC-5005"))
    headers = signed_headers(original, SECRET, now(shop))
    changed = original.replace(b"249900", b"1")
    assert changed != original

    response = shop.post(changed, headers)

    assert response.status_code == 401
    assert error_of(response)["code"] == "signature_invalid"
    assert_nothing_recorded(shop, "OC-5005")


def test_a_captured_request_replayed_after_the_window_is_refused(
    shop: Shop, caplog: pytest.LogCaptureFixture
) -> None:
    body = encode(purchase_for("simple", BUYER, "OC-5006"))
    headers = signed_headers(body, SECRET, now(shop))
    shop.clock.advance(minutes=5, seconds=1)

    with caplog.at_level(logging.WARNING, logger="haulmer_onboarding"):
        response = shop.post(body, headers)

    assert response.status_code == 401
    assert error_of(response)["code"] == "signature_expired"
    assert "401 signature_expired" in caplog.text
    assert_nothing_recorded(shop, "OC-5006")


def test_a_signature_from_the_future_is_refused(shop: Shop) -> None:
    body = encode(purchase_for("simple", BUYER, "OC-5007"))
    response = shop.post(body, signed_headers(body, SECRET, now(shop) + 301))

    assert response.status_code == 401
    assert error_of(response)["code"] == "signature_from_future"
    assert_nothing_recorded(shop, "OC-5007")


def test_a_clock_a_little_off_is_tolerated(shop: Shop) -> None:
    body = encode(purchase_for("simple", BUYER, "OC-5008"))
    late = shop.post(body, signed_headers(body, SECRET, now(shop) - 299))
    assert late.status_code == 201


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "signature_missing"),
        ("", "signature_missing"),
        ("sha256=abc", "signature_malformed"),
        ("t=1700000000", "signature_malformed"),
        ("v1=" + "0" * 64, "signature_malformed"),
        ("t=soon,v1=" + "0" * 64, "signature_malformed"),
    ],
)
def test_a_missing_or_malformed_header_is_refused(
    shop: Shop, header: str | None, code: str
) -> None:
    body = encode(purchase_for("simple", BUYER, "OC-5009"))
    headers = {"Content-Type": "application/json"}
    if header is not None:
        headers[SIGNATURE_HEADER] = header

    response = shop.post(body, headers)

    assert response.status_code == 401
    assert error_of(response)["code"] == code
    assert_nothing_recorded(shop, "OC-5009")


def test_every_configured_secret_is_accepted_while_rotating(shop: Shop) -> None:
    old = post_purchase(
        shop.server.url,
        purchase_for("simple", BUYER, "OC-5010"),
        OLD_SECRET,
        timestamp=now(shop),
    )
    assert old.status_code == 201

    # A shop moving to the new secret may sign with both.
    body = encode(purchase_for("simple", "otra@ferreteria.cl", "OC-5011"))
    retired = "whsec_" + secrets.token_urlsafe(24)
    both = shop.post(body, signed_headers(body, [retired, SECRET], now(shop)))
    assert both.status_code == 201

    # Case of the hex digits does not matter; later schemes are ignored.
    body = encode(purchase_for("simple", "tercera@ferreteria.cl", "OC-5012"))
    t = now(shop)
    header = f"t={t},v0=legacy,v1={sign(body, SECRET, t).upper()}"
    mixed = shop.post(
        body, {"Content-Type": "application/json", SIGNATURE_HEADER: header}
    )
    assert mixed.status_code == 201


def test_a_retired_secret_is_refused(shop: Shop) -> None:
    retired = "whsec_" + secrets.token_urlsafe(24)
    response = post_purchase(
        shop.server.url,
        purchase_for("simple", BUYER, "OC-5013"),
        retired,
        timestamp=now(shop),
    )
    assert response.status_code == 401
    assert_nothing_recorded(shop, "OC-5013")


def _valid() -> dict[str, Any]:
    return webhook_body(purchase_for("simple", BUYER, "OC-5020"))


@pytest.mark.parametrize(
    ("change", "status", "code", "field"),
    [
        (lambda d: d.pop("order_number"), 422, "field_missing", "order_number"),
        (lambda d: d.update(items="OF-PYME"), 422, "field_invalid", "items"),
        (lambda d: d.update(ordernumber="x"), 422, "field_unknown", "ordernumber"),
        (
            lambda d: d["items"][0].update(quantity=True),
            422,
            "field_invalid",
            "items[0].quantity",
        ),
        (
            lambda d: d["items"][0].update(quantity=0),
            422,
            "field_invalid",
            "items[0].quantity",
        ),
        (lambda d: d["items"][0].pop("code"), 422, "field_missing", "items[0].code"),
        (lambda d: d.update(paid_at="ayer"), 422, "field_invalid", "paid_at"),
        (
            lambda d: d.update(paid_at="2026-12-03T10:00:00"),
            422,
            "field_invalid",
            "paid_at",
        ),
        (lambda d: d.update(changes_legal_name="no"), 422, "field_invalid", None),
        (lambda d: d.update(rut="76.086.428-4"), 422, "rut_check_digit", "rut"),
        (lambda d: d.update(email="no es correo"), 422, "email_invalid", "email"),
        (lambda d: d.update(items=[]), 422, "purchase_empty", "items"),
        (
            lambda d: d["items"][0].update(code="NADA"),
            422,
            "purchase_unknown_products",
            "items",
        ),
        # Free text is one line of visible characters (docs/journey.md).
        (
            lambda d: d.update(buyer_name="Camila \u202eRojas"),
            422,
            "buyer_name_invalid_character",
            "buyer_name",
        ),
        (
            lambda d: d["items"][0].update(name="Plan\nPyme"),
            422,
            "item_name_invalid_character",
            "items[0].name",
        ),
    ],
)
def test_a_signed_but_wrong_purchase_gets_a_stable_code_and_changes_nothing(
    shop: Shop, change: Any, status: int, code: str, field: str | None
) -> None:
    data = _valid()
    change(data)
    response = post_purchase(shop.server.url, data, SECRET, timestamp=now(shop))

    assert response.status_code == status
    error = error_of(response)
    assert error["code"] == code
    if field is not None:
        assert error["field"] == field
    assert error["message"]
    assert_nothing_recorded(shop, "OC-5020")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", "body_not_json"),
        (b"\xff\xfe", "body_not_json"),
        (b"[1, 2]", "body_not_object"),
        (b"", "body_not_json"),
        (b"[" * 60_000, "body_not_json"),
    ],
)
def test_a_body_that_is_not_a_json_object_is_refused(
    shop: Shop, body: bytes, code: str
) -> None:
    response = shop.post(body, signed_headers(body, SECRET, now(shop)))
    assert response.status_code == 400
    assert error_of(response)["code"] == code


def test_the_same_order_number_with_other_data_is_a_conflict(shop: Shop) -> None:
    first = post_purchase(
        shop.server.url,
        purchase_for("simple", BUYER, "OC-5030"),
        SECRET,
        timestamp=now(shop),
    )
    assert first.status_code == 201
    assert shop.deliver() == 5

    other = webhook_body(purchase_for("simple", BUYER, "OC-5030"))
    other["items"][0]["unit_price"] = 1
    response = post_purchase(shop.server.url, other, SECRET, timestamp=now(shop))

    assert response.status_code == 409
    assert error_of(response)["code"] == "purchase_conflict"
    assert shop.deliver() == 0


def test_only_json_is_taken(shop: Shop) -> None:
    body = encode(purchase_for("simple", BUYER, "OC-5040"))
    headers = signed_headers(body, SECRET, now(shop))
    headers["Content-Type"] = "application/x-www-form-urlencoded"

    response = shop.post(body, headers)

    assert response.status_code == 415
    assert error_of(response)["code"] == "content_type_unsupported"
    assert_nothing_recorded(shop, "OC-5040")


def test_a_body_too_large_is_refused_before_it_is_read(shop: Shop) -> None:
    data = _valid()
    data["buyer_name"] = "x" * MAX_BODY_BYTES
    body = json.dumps(data).encode()

    response = shop.post(body, signed_headers(body, SECRET, now(shop)))

    assert response.status_code == 413
    assert error_of(response)["code"] == "body_too_large"

    def chunks() -> Iterator[bytes]:
        yield body  # no Content-Length: counted as it streams

    streamed = httpx.post(
        shop.url, content=chunks(), headers=signed_headers(body, SECRET, now(shop))
    )
    assert streamed.status_code == 413
    assert_nothing_recorded(shop, "OC-5020")


def test_only_post_is_served(shop: Shop) -> None:
    assert httpx.get(shop.url).status_code == 405


def test_a_deployment_without_webhook_secrets_refuses_every_purchase(
    settings: Settings, catcher: SmtpCatcher
) -> None:
    onboarding = Onboarding(settings)
    onboarding.create_tables()
    purchase = purchase_for("simple", BUYER, "OC-5050")
    with serve_in_thread(create_app(onboarding)) as server:
        response = post_purchase(server.url, purchase, "anything-sixteen-chars")
    assert response.status_code == 503
    assert error_of(response)["code"] == "webhook_not_configured"
    with pytest.raises(NotFoundError):
        onboarding.journey_by_order("OC-5050")
    onboarding.close()


def test_settings_read_webhook_secrets_and_tolerance_from_the_environment() -> None:
    env = {
        "HAULMER_ONBOARDING_SECRET_KEYS": secrets.token_urlsafe(32),
        "HAULMER_ONBOARDING_SEALING_KEYS": Fernet.generate_key().decode(),
        "HAULMER_ONBOARDING_WEBHOOK_SECRETS": f"{SECRET}, {OLD_SECRET}",
        "HAULMER_ONBOARDING_WEBHOOK_TOLERANCE": "120",
    }
    settings = Settings.from_env(env)
    assert settings.webhook_secrets == (SECRET, OLD_SECRET)
    assert settings.webhook_tolerance.total_seconds() == 120
    assert SECRET not in repr(settings)

    with pytest.raises(ValueError, match="webhook_secrets"):
        Settings.from_env({**env, "HAULMER_ONBOARDING_WEBHOOK_SECRETS": "short"})
