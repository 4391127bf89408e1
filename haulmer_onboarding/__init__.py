"""haulmer-onboarding: the onboarding journey of Haulmer's customers.

The public face: everything a web framework, a product plugin or a test
needs is importable from here. Product plugins import nothing else.
"""

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
from haulmer_onboarding.journey import ExpiredLink, Link, Onboarding, normalize_email
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
