"""Walk a whole journey through the facade, reading links from real emails.

For tests of the core and of product plugins: the customer's steps are the
facade's methods, each fed with the link of the email that carries it, as
delivered over SMTP to the catcher. The certification is moved on by the
sandbox's own control endpoint.
"""

from __future__ import annotations

import attrs
import httpx

from haulmer_onboarding.errors import SignatureError
from haulmer_onboarding.journey import Onboarding
from haulmer_onboarding.models import Journey, Purchase, Stage
from haulmer_onboarding.signatures import load_signature
from haulmer_onboarding.testing.customer import link_in
from haulmer_onboarding.testing.signatures import make_pkcs12
from haulmer_onboarding.testing.smtp import CaughtMessage, SmtpCatcher

__all__ = ["JourneyWalker"]

PASSWORD = "[Haulmer Accounts] Crea tu nueva contraseña"
WORKSPACE = "[Workspace] Crea tu nuevo espacio de trabajo"
SETUP = "¡Habilita tu organización para emitir documentos!"


@attrs.define
class JourneyWalker:
    """Drives ``onboarding`` as the customer of each journey would."""

    onboarding: Onboarding
    catcher: SmtpCatcher
    sandbox_url: str
    password: str = "Cordillera2026"
    signature_password: str = "firma-1234"

    def deliver(self) -> list[CaughtMessage]:
        """Do the worker's part once; return every caught message."""
        self.onboarding.process_password_requests()
        self.onboarding.relay().deliver_pending()
        return self.catcher.messages

    def token(self, recipient: str, subject: str, button: str) -> str:
        """The token of the newest email to ``recipient`` with ``subject``."""
        found = [
            m
            for m in self.deliver()
            if recipient in m.rcpt_tos and m.subject.startswith(subject)
        ]
        if not found:
            raise LookupError(f"no email {subject!r} for {recipient}")
        return link_in(found[-1], button).rsplit("/", 1)[1]

    def to_signature(
        self,
        purchase: Purchase,
        pfx: bytes | None = None,
        signature_password: str | None = None,
        legal_representative_rut: str | None = None,
    ) -> tuple[Journey, str]:
        """Record ``purchase`` and take it to the documents step: password,
        the workspace wizard when needed, COMENZAR, the organization and the
        signature (``pfx``, or a fresh one). The legal representative's RUT
        typed is ``legal_representative_rut``, or else the holder's of the
        signature, as a customer uploading that person's file would type it.
        Returns the journey and the INICIAR SETUP token, still unused."""
        journey = self.onboarding.record_purchase(purchase)
        buyer = journey.buyer.email
        self.onboarding.set_password(
            self.token(buyer, PASSWORD, "CREAR CONTRASEÑA"),
            self.password,
            self.password,
        )
        if journey.stage is Stage.WORKSPACE_PENDING:
            wizard = self.token(buyer, WORKSPACE, "CREAR WORKSPACE")
            self.onboarding.activate_workspace(wizard)
            self.onboarding.create_workspace_administrator(
                wizard, buyer, purchase.buyer_name
            )
            self.onboarding.name_workspace(wizard, purchase.buyer_name)
            self.onboarding.finish_workspace(
                wizard, "Organización de Prueba SpA", "76.543.210-3"
            )
            journey = self.onboarding.journey(journey.id)

        setup = self.token(buyer, SETUP, "INICIAR SETUP")
        self.onboarding.begin_setup(setup)
        assert journey.workspace is not None
        self.onboarding.choose_organization(
            setup, organization_id=journey.workspace.organizations[0].id
        )
        password = signature_password or self.signature_password
        if pfx is None:
            pfx = make_pkcs12(password=password)
        if legal_representative_rut is None:
            legal_representative_rut = self._holder_rut(pfx, password)
        self.onboarding.upload_signature(setup, pfx, password, legal_representative_rut)
        return self.onboarding.journey(journey.id), setup

    def _holder_rut(self, pfx: bytes, password: str) -> str | None:
        try:
            loaded = load_signature(pfx, password, now=self.onboarding.clock())
        except SignatureError:
            return None  # the upload itself will say what is wrong
        rut = loaded.info.holder_rut
        return None if rut is None else rut.formatted()

    def to_enabled(
        self, purchase: Purchase, documents: tuple[int, ...] = ()
    ) -> Journey:
        """Record ``purchase`` and take it to an enabled organization."""
        _, setup = self.to_signature(purchase)
        journey = self.onboarding.choose_documents(setup, documents)
        return self.finish_certification(journey)

    def finish_certification(self, journey: Journey) -> Journey:
        """Move the sandbox certification through every step, polling."""
        assert journey.certification is not None
        certification_id = journey.certification["id"]
        if not certification_id:
            self.onboarding.poll_certifications()
            journey = self.onboarding.journey(journey.id)
            assert journey.certification is not None
            certification_id = journey.certification["id"]
        assert journey.certification is not None
        # A step may fail once and run again: advance until the service
        # gives its verdict, within a bound.
        for _ in range(3 * len(journey.certification["steps"])):
            response = httpx.post(
                f"{self.sandbox_url}/v1/certifications/{certification_id}/advance"
            )
            if response.status_code == 409:  # the service already decided
                break
            response.raise_for_status()
            self.onboarding.poll_certifications()
            journey = self.onboarding.journey(journey.id)
            if journey.stage is not Stage.CERTIFYING:
                break
        self.onboarding.poll_certifications()
        return self.onboarding.journey(journey.id)
