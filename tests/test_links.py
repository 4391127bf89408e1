"""Links against real mailboxes: scanners, races, clocks, keys and abuse.

Each test plays the real scenario: links come from emails delivered to the
SMTP server, clocks are moved, races run in threads, pages over HTTP.
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import attrs
import httpx
import pytest

from haulmer_onboarding import (
    LinkExpired,
    LinkInvalid,
    LinkSuperseded,
    LinkUsed,
    LinkWrongPurpose,
    OnboardingError,
    Purpose,
    RateLimited,
    Settings,
    Stage,
)
from haulmer_onboarding.journey import Onboarding
from haulmer_onboarding.testing.clock import MovableClock
from haulmer_onboarding.testing.customer import WebCustomer, link_in
from haulmer_onboarding.testing.scenarios import purchase_for
from haulmer_onboarding.testing.servers import serve_in_thread
from haulmer_onboarding.testing.smtp import CaughtMessage, SmtpCatcher
from haulmer_onboarding.web import RedactLinkTokens, create_app

BUYER = "ana.perez@example.cl"
GOOD = "Cordillera2026"
BUTTONS = {
    Purpose.CREATE_PASSWORD: ("[Haulmer Accounts]", "CREAR CONTRASEÑA"),
    Purpose.CREATE_WORKSPACE: ("[Workspace]", "CREAR WORKSPACE"),
    Purpose.TAX_DOCUMENT: ("¿Boleta o factura?", "SOLICITAR DOCUMENTO"),
}


def deliver(onboarding: Onboarding, catcher: SmtpCatcher) -> list[CaughtMessage]:
    onboarding.process_password_requests()
    onboarding.relay().deliver_pending()
    return catcher.messages


def latest_token(
    onboarding: Onboarding, catcher: SmtpCatcher, purpose: str, to: str = BUYER
) -> str:
    subject, button = BUTTONS[purpose]
    messages = [
        m
        for m in deliver(onboarding, catcher)
        if m.subject.startswith(subject) and to in m.rcpt_tos
    ]
    return link_in(messages[-1], button).rsplit("/", 1)[1]


def variant(settings: Settings, **changes: object) -> Onboarding:
    """Another deployment on the same database (another host, other keys)."""
    return Onboarding(attrs.evolve(settings, **changes))


# -- 1. purpose --------------------------------------------------------------


def test_each_link_is_refused_by_every_other_step(
    onboarding: Onboarding, catcher: SmtpCatcher
) -> None:
    onboarding.record_purchase(purchase_for("razon-social", BUYER))
    tokens = {p: latest_token(onboarding, catcher, p) for p in BUTTONS}
    for made_for, token in tokens.items():
        for purpose in [*BUTTONS, Purpose.START_SETUP, "openretail_activation"]:
            if purpose == made_for:
                assert onboarding.open_link(token, purpose).purpose == purpose
                continue
            with pytest.raises(LinkWrongPurpose) as info:
                onboarding.open_link(token, purpose)
            assert (info.value.expected, info.value.actual) == (purpose, made_for)

    # The steps themselves refuse it too, and nothing changes.
    password = tokens[Purpose.CREATE_PASSWORD]
    with pytest.raises(LinkWrongPurpose):
        onboarding.request_tax_document(password, kind="boleta")
    with pytest.raises(LinkWrongPurpose):
        onboarding.set_password(tokens[Purpose.TAX_DOCUMENT], GOOD, GOOD)
    assert onboarding.open_link(password, Purpose.CREATE_PASSWORD)


def test_a_purpose_a_plugin_adds_is_bound_like_the_core_ones(
    onboarding: Onboarding,
) -> None:
    token, claims = onboarding.signer.issue("openretail_activation")
    assert onboarding.signer.read(token, "openretail_activation") == claims
    with pytest.raises(LinkWrongPurpose):
        onboarding.signer.read(token, Purpose.CREATE_PASSWORD)


# -- 2. expiry, and a new link by POST -----------------------------------------


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock()


@pytest.fixture
def timed(settings: Settings, clock: MovableClock) -> Iterator[Onboarding]:
    facade = Onboarding(attrs.evolve(settings, clock=clock))
    facade.create_tables()
    yield facade
    facade.close()


def test_expiry_is_per_purpose_with_documented_defaults(
    timed: Onboarding, catcher: SmtpCatcher, clock: MovableClock
) -> None:
    timed.record_purchase(purchase_for("razon-social", BUYER))
    password = latest_token(timed, catcher, Purpose.CREATE_PASSWORD)
    workspace = latest_token(timed, catcher, Purpose.CREATE_WORKSPACE)

    clock.advance(days=2, hours=23)
    timed.open_link(password, Purpose.CREATE_PASSWORD)
    clock.advance(hours=2)
    with pytest.raises(LinkExpired) as info:
        timed.set_password(password, GOOD, GOOD)
    assert info.value.purpose == Purpose.CREATE_PASSWORD
    assert info.value.expired_at is not None
    # The workspace link lives 14 days.
    timed.open_link(workspace, Purpose.CREATE_WORKSPACE)
    clock.advance(days=12)
    with pytest.raises(LinkExpired):
        timed.open_link(workspace, Purpose.CREATE_WORKSPACE)


def test_expiry_is_configurable(
    settings: Settings, catcher: SmtpCatcher, clock: MovableClock
) -> None:
    from datetime import timedelta

    facade = Onboarding(
        attrs.evolve(
            settings,
            clock=clock,
            link_max_ages={Purpose.CREATE_PASSWORD: timedelta(minutes=30)},
        )
    )
    facade.create_tables()
    facade.record_purchase(purchase_for("simple", BUYER))
    token = latest_token(facade, catcher, Purpose.CREATE_PASSWORD)
    clock.advance(minutes=31)
    with pytest.raises(LinkExpired):
        facade.open_link(token, Purpose.CREATE_PASSWORD)


@pytest.fixture
def web(timed: Onboarding) -> Iterator[str]:
    with serve_in_thread(create_app(timed)) as server:
        yield server.url


def test_an_expired_link_offers_a_new_one_by_post_only(
    timed: Onboarding, catcher: SmtpCatcher, clock: MovableClock, web: str
) -> None:
    timed.record_purchase(purchase_for("simple", BUYER))
    token = latest_token(timed, catcher, Purpose.CREATE_PASSWORD)
    clock.advance(days=4)
    sent_before = len(deliver(timed, catcher))

    customer = WebCustomer()
    for _ in range(3):  # scanners and impatient customers
        page = customer.open(f"{web}/contrasena/{token}")
        assert page.status == 410
        assert "a*****@example.cl" in page.text
        assert BUYER not in page.text
        assert httpx.head(f"{web}/contrasena/{token}").status_code == 410
    assert len(deliver(timed, catcher)) == sent_before

    done = customer.submit(page, "ENVIAR UN NUEVO ENLACE")
    assert done.status == 200
    assert "Te enviamos un enlace nuevo" in done.text
    messages = deliver(timed, catcher)
    assert len(messages) == sent_before + 1
    assert messages[-1].subject == "[Haulmer Accounts] Crea tu nueva contraseña"
    assert messages[-1].to == BUYER

    # The expired link cannot be renewed twice; the new one works.
    again = customer.submit(page, "ENVIAR UN NUEVO ENLACE")
    assert again.status == 410
    assert "reemplazado" in again.text
    fresh = latest_token(timed, catcher, Purpose.CREATE_PASSWORD)
    assert timed.set_password(fresh, GOOD, GOOD).has_password


def test_an_expired_setup_link_is_renewed_to_the_administrator(
    timed: Onboarding, catcher: SmtpCatcher, clock: MovableClock
) -> None:
    journey = timed.record_purchase(purchase_for("simple", BUYER))
    setup = link_in(deliver(timed, catcher)[-1], "INICIAR SETUP").rsplit("/", 1)[1]
    clock.advance(days=15)
    assert timed.expired_link(setup, Purpose.START_SETUP).recipient_hint == (
        "a*****@example.cl"
    )
    timed.renew_link(setup, Purpose.START_SETUP)
    assert deliver(timed, catcher)[-1].subject == (
        "¡Habilita tu organización para emitir documentos!"
    )
    assert timed.journey(journey.id).stage is Stage.SETUP_PENDING
    with pytest.raises(LinkSuperseded):
        timed.renew_link(setup, Purpose.START_SETUP)


def test_a_link_that_is_not_expired_is_not_renewed(
    onboarding: Onboarding, catcher: SmtpCatcher
) -> None:
    onboarding.record_purchase(purchase_for("simple", BUYER))
    token = latest_token(onboarding, catcher, Purpose.CREATE_PASSWORD)
    with pytest.raises(LinkInvalid):
        onboarding.renew_link(token, Purpose.CREATE_PASSWORD)


# -- 3. used once, atomically; GET and HEAD never consume ----------------------


def race(calls: int, action: object) -> list[object]:
    """Run ``action`` in ``calls`` threads released at the same instant."""
    barrier = threading.Barrier(calls)
    results: list[object] = [None] * calls

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = action()  # type: ignore[operator]
        except OnboardingError as exc:
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


def test_two_concurrent_uses_of_one_link_exactly_one_wins(
    onboarding: Onboarding, catcher: SmtpCatcher
) -> None:
    onboarding.record_purchase(purchase_for("simple", BUYER))
    token = latest_token(onboarding, catcher, Purpose.CREATE_PASSWORD)
    results = race(4, lambda: onboarding.set_password(token, GOOD, GOOD))
    winners = [r for r in results if not isinstance(r, OnboardingError)]
    losers = [r for r in results if isinstance(r, OnboardingError)]
    assert len(winners) == 1
    assert len(losers) == 3
    assert all(isinstance(r, LinkUsed) for r in losers)
    assert {r.code for r in losers} == {"link_used"}


def test_two_concurrent_posts_over_http_exactly_one_wins(
    onboarding: Onboarding, catcher: SmtpCatcher
) -> None:
    onboarding.record_purchase(purchase_for("simple", BUYER))
    token = latest_token(onboarding, catcher, Purpose.TAX_DOCUMENT)
    with serve_in_thread(create_app(onboarding)) as server:
        url = f"{server.url}/documento-tributario/{token}"
        with WebCustomer() as web:
            form = dict(web.open(url).form("SOLICITAR DOCUMENTO").fields)
        results = race(
            3,
            lambda: httpx.post(
                url, data={**form, "kind": "boleta"}, follow_redirects=True
            ),
        )
    # Each post is answered 303 (post/redirect/get); the pages they land on
    # tell the winner it is done and the others that the link was used.
    assert all(
        [h.status_code for h in r.history] == [303]  # type: ignore[attr-defined]
        for r in results
    )
    statuses = sorted(r.status_code for r in results)  # type: ignore[attr-defined]
    assert statuses == [200, 410, 410]
    used = [r for r in results if r.status_code == 410]  # type: ignore[attr-defined]
    assert all("ya fue usado" in r.text for r in used)  # type: ignore[attr-defined]
    events = [e.kind for e in onboarding.events(1)]
    assert events.count("tax_document_requested") == 1


def test_scanners_fetching_links_consume_nothing(
    onboarding: Onboarding, catcher: SmtpCatcher
) -> None:
    onboarding.record_purchase(purchase_for("razon-social", BUYER))
    links = {
        p: link_in(
            [m for m in deliver(onboarding, catcher) if m.subject.startswith(s)][-1], b
        )
        for p, (s, b) in BUTTONS.items()
    }
    with serve_in_thread(create_app(onboarding)) as server:
        for url in links.values():
            local = url.replace("http://127.0.0.1:9", server.url)
            for _ in range(3):
                assert httpx.head(local).status_code == 200
                assert (
                    httpx.get(local, headers={"User-Agent": "scanner"}).status_code
                    == 200
                )
    token = links[Purpose.CREATE_PASSWORD].rsplit("/", 1)[1]
    assert onboarding.set_password(token, GOOD, GOOD).has_password


# -- 4. bound to state ---------------------------------------------------------


def test_setting_the_password_kills_every_earlier_password_link(
    onboarding: Onboarding, catcher: SmtpCatcher
) -> None:
    onboarding.record_purchase(purchase_for("simple", BUYER))
    first = latest_token(onboarding, catcher, Purpose.CREATE_PASSWORD)
    onboarding.request_password_email(BUYER)
    second = latest_token(onboarding, catcher, Purpose.CREATE_PASSWORD)
    with pytest.raises(LinkSuperseded):
        onboarding.open_link(first, Purpose.CREATE_PASSWORD)
    onboarding.set_password(second, GOOD, GOOD)
    with pytest.raises(LinkUsed):
        onboarding.open_link(second, Purpose.CREATE_PASSWORD)
    with pytest.raises(LinkUsed):
        onboarding.open_link(first, Purpose.CREATE_PASSWORD)


def test_unrelated_changes_do_not_kill_a_link(
    onboarding: Onboarding, catcher: SmtpCatcher
) -> None:
    journey = onboarding.record_purchase(purchase_for("simple", BUYER))
    tax = latest_token(onboarding, catcher, Purpose.TAX_DOCUMENT)
    password = latest_token(onboarding, catcher, Purpose.CREATE_PASSWORD)
    setup = link_in(deliver(onboarding, catcher)[4], "INICIAR SETUP").rsplit("/", 1)[1]

    onboarding.set_password(password, GOOD, GOOD)
    assert onboarding.verify_password(BUYER, GOOD)  # logging in
    onboarding.begin_setup(setup)
    assert journey.organization is not None
    onboarding.choose_organization(setup, organization_id=journey.organization.id)
    onboarding.request_password_email(BUYER)  # a password link, not these

    assert onboarding.request_tax_document(tax, kind="boleta").tax_document
    assert onboarding.open_link(setup, Purpose.START_SETUP).journey


# -- 5. key rotation -----------------------------------------------------------


def test_rotated_keys_verify_old_links_and_sign_with_the_new_key(
    settings: Settings, catcher: SmtpCatcher
) -> None:
    before = variant(settings, secret_keys=("old-key-0123456789",))
    before.create_tables()
    before.record_purchase(purchase_for("simple", BUYER))
    old_link = latest_token(before, catcher, Purpose.CREATE_PASSWORD)

    rotated = variant(
        settings, secret_keys=("new-key-0123456789", "old-key-0123456789")
    )
    assert rotated.open_link(old_link, Purpose.CREATE_PASSWORD)
    rotated.request_password_email(BUYER)
    new_link = latest_token(rotated, catcher, Purpose.CREATE_PASSWORD)

    only_new = variant(settings, secret_keys=("new-key-0123456789",))
    assert only_new.open_link(new_link, Purpose.CREATE_PASSWORD)
    with pytest.raises(LinkInvalid):
        before.open_link(new_link, Purpose.CREATE_PASSWORD)


# -- 6. clock skew -------------------------------------------------------------


def test_a_host_a_few_seconds_ahead_is_tolerated_the_far_future_is_not(
    settings: Settings, catcher: SmtpCatcher
) -> None:
    here = MovableClock()
    ahead = MovableClock(here.now)
    ahead.advance(seconds=20)
    issuer = variant(settings, clock=ahead)
    issuer.create_tables()
    issuer.record_purchase(purchase_for("simple", BUYER))
    token = latest_token(issuer, catcher, Purpose.CREATE_PASSWORD)
    reader = variant(settings, clock=here)
    assert reader.open_link(token, Purpose.CREATE_PASSWORD)

    ahead.advance(hours=2)
    issuer.request_password_email(BUYER)
    future = latest_token(issuer, catcher, Purpose.CREATE_PASSWORD)
    with pytest.raises(LinkInvalid) as info:
        reader.open_link(future, Purpose.CREATE_PASSWORD)
    assert info.value.reason == "future"


# -- 7. links survive click trackers -------------------------------------------


def test_a_percent_encoded_token_still_works(
    onboarding: Onboarding, catcher: SmtpCatcher
) -> None:
    onboarding.record_purchase(purchase_for("simple", BUYER))
    token = latest_token(onboarding, catcher, Purpose.CREATE_PASSWORD)
    encoded = "".join(f"%{ord(c):02X}" if c in ".-_" else c for c in token)
    with serve_in_thread(create_app(onboarding)) as server:
        page = httpx.get(f"{server.url}/contrasena/{encoded}")
    assert page.status_code == 200
    assert "Crea tu nueva contraseña" in page.text


# -- 8. addresses --------------------------------------------------------------


def test_addresses_are_matched_trimmed_and_without_case(
    onboarding: Onboarding, catcher: SmtpCatcher
) -> None:
    first = onboarding.record_purchase(purchase_for("simple", "Ana.Perez@Example.CL"))
    second = onboarding.record_purchase(
        purchase_for("simpleboleta", " ANA.perez@example.cl")
    )
    assert first.buyer.id == second.buyer.id
    onboarding.request_password_email(" ana.perez@example.cl")
    resent = [
        m
        for m in deliver(onboarding, catcher)
        if m.subject == "[Haulmer Accounts] Crea tu nueva contraseña"
    ]
    assert len(resent) == 3
    assert {m.to for m in resent} == {BUYER}


# -- 9. forgot password --------------------------------------------------------


@pytest.fixture
def forgiving(settings: Settings) -> Iterator[Onboarding]:
    facade = variant(
        settings, forgot_password_per_address=1000, forgot_password_per_client=1000
    )
    facade.create_tables()
    yield facade
    facade.close()


def test_forgot_password_takes_about_as_long_for_known_and_unknown(
    forgiving: Onboarding,
) -> None:
    forgiving.record_purchase(purchase_for("simple", BUYER))

    def median(address: str) -> float:
        samples = []
        for _ in range(25):
            start = time.perf_counter()
            forgiving.request_password_email(address)
            samples.append(time.perf_counter() - start)
        return statistics.median(samples)

    median(BUYER)  # warm up
    ratio = median(BUYER) / median("nadie@example.cl")
    # Loose bounds: a shared machine is noisy, but a known address must not
    # take several times as long as an unknown one, nor the reverse.
    assert 0.33 < ratio < 3.0, ratio


def test_forgot_password_answers_the_same_while_smtp_is_down(
    settings: Settings, tmp_path: Path
) -> None:
    down = variant(settings, smtp_port=9)  # nothing listens on port 9
    down.create_tables()
    down.record_purchase(purchase_for("simple", BUYER))
    with serve_in_thread(create_app(down)) as server, WebCustomer() as web:
        page = web.open(f"{server.url}/olvide-mi-contrasena")
        known = web.submit(page, "ENVIAR EMAIL", {"email": BUYER})
        unknown = web.submit(page, "ENVIAR EMAIL", {"email": "nadie@example.cl"})
    assert known.status == unknown.status == 200
    assert known.text.replace(BUYER, "X") == unknown.text.replace(
        "nadie@example.cl", "X"
    )
    assert down.relay().deliver_pending() == 0  # queued, not lost


def test_forgot_password_is_rate_limited_per_address_and_per_client(
    settings: Settings,
) -> None:
    strict = variant(
        settings, forgot_password_per_address=2, forgot_password_per_client=3
    )
    strict.create_tables()
    strict.record_purchase(purchase_for("simple", BUYER))
    strict.request_password_email(BUYER, client="10.0.0.1")
    strict.request_password_email(BUYER.upper(), client="10.0.0.2")
    with pytest.raises(RateLimited) as info:
        strict.request_password_email(BUYER, client="10.0.0.3")
    assert info.value.code == "rate_limited"
    assert 0 < info.value.retry_after <= 3600
    # Unknown addresses count the same: the limit reveals nothing.
    strict.request_password_email("x@example.cl", client="10.0.0.9")
    strict.request_password_email("x@example.cl", client="10.0.0.9")
    with pytest.raises(RateLimited):
        strict.request_password_email("x@example.cl", client="10.0.0.9")

    for number in range(3):
        strict.request_password_email(f"otro{number}@example.cl", client="10.0.0.7")
    with pytest.raises(RateLimited):
        strict.request_password_email("otro9@example.cl", client="10.0.0.7")

    with serve_in_thread(create_app(strict)) as server:
        url = f"{server.url}/olvide-mi-contrasena"
        with WebCustomer() as web:
            form = dict(web.open(url).form("ENVIAR EMAIL").fields)
            for _ in range(3):
                limited = web.client.post(url, data={**form, "email": "web@example.cl"})
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) > 0
    assert "demasiadas solicitudes" in limited.text


# -- 10. one exception tree ----------------------------------------------------


def test_link_errors_carry_codes_and_match_builtins(
    onboarding: Onboarding, catcher: SmtpCatcher
) -> None:
    onboarding.record_purchase(purchase_for("simple", BUYER))
    token = latest_token(onboarding, catcher, Purpose.CREATE_PASSWORD)
    onboarding.set_password(token, GOOD, GOOD)
    with pytest.raises(ValueError) as info:  # noqa: PT011 - the built-in is the point
        onboarding.set_password(token, GOOD, GOOD)
    error = info.value
    assert isinstance(error, LinkUsed)
    assert error.as_dict() == {
        "code": "link_used",
        "message": error.message,
        "field": None,
    }
    assert error.used_at is not None
    codes = {
        cls.code
        for cls in (
            LinkInvalid,
            LinkExpired,
            LinkWrongPurpose,
            LinkUsed,
            LinkSuperseded,
        )
    }
    assert len(codes) == 5


def test_the_consume_guard_refuses_a_link_read_before_another_used_it(
    onboarding: Onboarding, catcher: SmtpCatcher
) -> None:
    """The conditional UPDATE alone must stop a second use: on PostgreSQL two
    transactions can both read a link as live before either consumes it."""
    onboarding.record_purchase(purchase_for("simple", BUYER))
    token = latest_token(onboarding, catcher, Purpose.CREATE_PASSWORD)
    with onboarding.store.begin() as conn:
        first = onboarding.links.read(conn, token, Purpose.CREATE_PASSWORD)
    with onboarding.store.begin() as conn:
        second = onboarding.links.read(conn, token, Purpose.CREATE_PASSWORD)
    with onboarding.store.begin() as conn:
        onboarding.links.consume(conn, first)
    with pytest.raises(LinkUsed), onboarding.store.begin() as conn:
        onboarding.links.consume(conn, second)
    with pytest.raises(LinkUsed), onboarding.store.begin() as conn:
        onboarding.links.use(conn, token, Purpose.CREATE_PASSWORD)


def test_edited_tokens_are_refused(
    onboarding: Onboarding, catcher: SmtpCatcher
) -> None:
    onboarding.record_purchase(purchase_for("simple", BUYER))
    token = latest_token(onboarding, catcher, Purpose.CREATE_PASSWORD)
    head, signature = token.rsplit(".", 1)
    for edited in (
        token + "é",
        token + "==",
        f"{head}.{signature[:10]}**{signature[10:]}",
        f"{head}.{signature[:-1]}{'B' if signature[-1] == 'A' else 'A'}",
    ):
        with pytest.raises(LinkInvalid):
            onboarding.open_link(edited, Purpose.CREATE_PASSWORD)


def test_access_logs_lose_percent_encoded_tokens_too(
    onboarding: Onboarding, catcher: SmtpCatcher
) -> None:
    onboarding.record_purchase(purchase_for("simple", BUYER))
    token = latest_token(onboarding, catcher, Purpose.CREATE_PASSWORD)
    encoded = token.replace(".", "%2E")
    # As uvicorn logs it: the request's raw path as one argument.
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '"%s %s HTTP/%s"',
        ("GET", f"/contrasena/{encoded}", "1.1"),
        None,
    )
    RedactLinkTokens().filter(record)
    assert record.getMessage() == '"GET /contrasena/[token] HTTP/1.1"'
