"""haulmer-onboarding: the onboarding journey of Haulmer's customers.

The public face: everything a web framework, a product plugin or a test
needs is importable from here. Product plugins import nothing else.

Names load on first use, so that importing a part of the package (the
pytest plugin of ``haulmer_onboarding.testing``, say) does not load all of
it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from haulmer_onboarding.actions import (
        ActionContext,
        ActionFailed,
        ActionResult,
        EnablementAction,
    )
    from haulmer_onboarding.certification import (
        CertificationClient,
        CertificationStatus,
        CertificationStep,
        StepStatus,
    )
    from haulmer_onboarding.dte import DteType
    from haulmer_onboarding.errors import (
        CertificationServiceError,
        ConflictError,
        DocumentsError,
        LinkError,
        LinkExpired,
        LinkInvalid,
        LinkSuperseded,
        LinkUsed,
        LinkWrongPurpose,
        NotFoundError,
        OnboardingError,
        PasswordError,
        PluginError,
        RateLimited,
        RutError,
        SignatureError,
        StepOrderError,
        ValidationError,
    )
    from haulmer_onboarding.hookspecs import Plugins, hookimpl, hookspec
    from haulmer_onboarding.journey import (
        ExpiredLink,
        Link,
        Onboarding,
        normalize_email,
    )
    from haulmer_onboarding.models import (
        Customer,
        DocumentOffer,
        DtePolicy,
        Journey,
        JourneyEvent,
        Organization,
        Product,
        Purchase,
        PurchaseItem,
        Stage,
        TaxDocumentRequest,
        Workspace,
    )
    from haulmer_onboarding.rut import Rut
    from haulmer_onboarding.sandbox import sandbox_endpoint
    from haulmer_onboarding.settings import Settings
    from haulmer_onboarding.signatures import SignatureInfo
    from haulmer_onboarding.tokens import Purpose

_EXPORTS = {
    "ActionContext": "haulmer_onboarding.actions",
    "ActionFailed": "haulmer_onboarding.actions",
    "ActionResult": "haulmer_onboarding.actions",
    "CertificationClient": "haulmer_onboarding.certification",
    "CertificationServiceError": "haulmer_onboarding.errors",
    "CertificationStatus": "haulmer_onboarding.certification",
    "CertificationStep": "haulmer_onboarding.certification",
    "ConflictError": "haulmer_onboarding.errors",
    "Customer": "haulmer_onboarding.models",
    "DocumentOffer": "haulmer_onboarding.models",
    "DocumentsError": "haulmer_onboarding.errors",
    "DtePolicy": "haulmer_onboarding.models",
    "DteType": "haulmer_onboarding.dte",
    "EnablementAction": "haulmer_onboarding.actions",
    "ExpiredLink": "haulmer_onboarding.journey",
    "Journey": "haulmer_onboarding.models",
    "JourneyEvent": "haulmer_onboarding.models",
    "Link": "haulmer_onboarding.journey",
    "LinkError": "haulmer_onboarding.errors",
    "LinkExpired": "haulmer_onboarding.errors",
    "LinkInvalid": "haulmer_onboarding.errors",
    "LinkSuperseded": "haulmer_onboarding.errors",
    "LinkUsed": "haulmer_onboarding.errors",
    "LinkWrongPurpose": "haulmer_onboarding.errors",
    "NotFoundError": "haulmer_onboarding.errors",
    "Onboarding": "haulmer_onboarding.journey",
    "OnboardingError": "haulmer_onboarding.errors",
    "Organization": "haulmer_onboarding.models",
    "FieldErrors": "haulmer_onboarding.errors",
    "PasswordError": "haulmer_onboarding.errors",
    "PluginError": "haulmer_onboarding.errors",
    "Plugins": "haulmer_onboarding.hookspecs",
    "Product": "haulmer_onboarding.models",
    "Purchase": "haulmer_onboarding.models",
    "PurchaseItem": "haulmer_onboarding.models",
    "Purpose": "haulmer_onboarding.tokens",
    "RateLimited": "haulmer_onboarding.errors",
    "Rut": "haulmer_onboarding.rut",
    "RutError": "haulmer_onboarding.errors",
    "Settings": "haulmer_onboarding.settings",
    "SignatureError": "haulmer_onboarding.errors",
    "SignatureInfo": "haulmer_onboarding.signatures",
    "Stage": "haulmer_onboarding.models",
    "StepOrderError": "haulmer_onboarding.errors",
    "StepStatus": "haulmer_onboarding.certification",
    "TaxDocumentRequest": "haulmer_onboarding.models",
    "ValidationError": "haulmer_onboarding.errors",
    "Workspace": "haulmer_onboarding.models",
    "hookimpl": "haulmer_onboarding.hookspecs",
    "hookspec": "haulmer_onboarding.hookspecs",
    "normalize_email": "haulmer_onboarding.journey",
    "sandbox_endpoint": "haulmer_onboarding.sandbox",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'haulmer_onboarding' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


__all__ = [
    "ActionContext",
    "ActionFailed",
    "ActionResult",
    "CertificationClient",
    "CertificationServiceError",
    "CertificationStatus",
    "CertificationStep",
    "ConflictError",
    "Customer",
    "DocumentOffer",
    "DocumentsError",
    "DtePolicy",
    "DteType",
    "EnablementAction",
    "ExpiredLink",
    "FieldErrors",
    "Journey",
    "JourneyEvent",
    "Link",
    "LinkError",
    "LinkExpired",
    "LinkInvalid",
    "LinkSuperseded",
    "LinkUsed",
    "LinkWrongPurpose",
    "NotFoundError",
    "Onboarding",
    "OnboardingError",
    "Organization",
    "PasswordError",
    "PluginError",
    "Plugins",
    "Product",
    "Purchase",
    "PurchaseItem",
    "Purpose",
    "RateLimited",
    "Rut",
    "RutError",
    "Settings",
    "SignatureError",
    "SignatureInfo",
    "Stage",
    "StepOrderError",
    "StepStatus",
    "TaxDocumentRequest",
    "ValidationError",
    "Workspace",
    "hookimpl",
    "hookspec",
    "normalize_email",
    "sandbox_endpoint",
]
