"""The OpenAPI 3 document of the JSON API, served at ``/api/v1/openapi.json``.

Written by hand, next to the handlers in ``api.py``; a test validates it
with openapi-spec-validator and calls the running API with schemathesis,
so a handler and its description cannot drift apart unnoticed.
"""

from __future__ import annotations

from typing import Any

__all__ = ["openapi_document"]

_NULLABLE_TEXT = {"type": "string", "nullable": True}
_OBJECT = {"type": "object", "additionalProperties": True}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _errors(*statuses: int) -> dict[str, Any]:
    said = {
        400: "A value the rules refuse (a field's own code, or "
        "<field>_invalid_character for a control, format or bidi character "
        "in free text), or a body that is not a JSON object of text "
        "(json_invalid: not JSON, nested past the parser's depth, or a lone "
        "surrogate escape)",
        401: "No link token in Authorization",
        404: "A link that is not genuine, or made for another step; told "
        "before the body is read",
        409: "A step before its turn; told before the body's fields are looked at",
        410: "A link expired, used or replaced; told before the body is read",
        413: "A body over the limit (request_too_large): the message gives the "
        "signature file's limit on /setup/signature, the request's elsewhere",
        415: "A body that is not application/json",
        429: "Too many requests; Retry-After gives the seconds to wait, and "
        "the message says the same wait",
        503: "The certification service is unavailable",
    }
    return {
        str(status): {
            "description": said[status],
            "content": _json(_ref("Error")),
        }
        for status in statuses
    }


_LINK_ERRORS = (401, 404, 410)
_POST_ERRORS = (400, 401, 404, 409, 410, 413, 415)


def _operation(
    summary: str,
    answer: str,
    *,
    body: str | None = None,
    errors: tuple[int, ...] = _LINK_ERRORS,
    status: int = 200,
    secured: bool = True,
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "responses": {
            str(status): {"description": "Done", "content": _json(_ref(answer))},
            **_errors(*errors),
        },
    }
    if body is not None:
        operation["requestBody"] = {"required": True, "content": _json(_ref(body))}
    operation["security"] = [{"link": []}] if secured else []
    return operation


def _fields(*names: str, required: tuple[str, ...] = ()) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {name: {"type": "string"} for name in names},
    }
    if required:
        schema["required"] = list(required)
    return schema


def _schemas() -> dict[str, Any]:
    organization = {
        "type": "object",
        "required": ["id", "legal_name", "rut"],
        "properties": {
            "id": {"type": "integer"},
            "legal_name": {"type": "string"},
            "rut": {"type": "string", "example": "76086428-5"},
        },
    }
    customer = {
        "type": "object",
        "required": ["email", "name", "has_password"],
        "properties": {
            "email": {"type": "string"},
            "name": {"type": "string"},
            "has_password": {"type": "boolean"},
        },
    }
    workspace = {
        "type": "object",
        "nullable": True,
        "properties": {
            "name": _NULLABLE_TEXT,
            "administrator_email": _NULLABLE_TEXT,
            "finished": {"type": "boolean"},
            "organizations": {"type": "array", "items": _ref("Organization")},
        },
    }
    journey = {
        "type": "object",
        "required": ["id", "order_number", "stage", "products", "buyer"],
        "properties": {
            "id": {"type": "integer"},
            "order_number": {"type": "string"},
            "stage": {
                "type": "string",
                "enum": [
                    "workspace_pending",
                    "workspace_activated",
                    "workspace_admin_created",
                    "workspace_named",
                    "setup_pending",
                    "setup_started",
                    "setup_organization_chosen",
                    "setup_signature_loaded",
                    "certifying",
                    "enabled",
                    "certification_failed",
                ],
            },
            "products": {"type": "array", "items": {"type": "string"}},
            "changes_legal_name": {"type": "boolean"},
            "buyer": _ref("Customer"),
            "workspace": workspace,
            # A $ref cannot be nullable in OpenAPI 3.0: it is wrapped.
            "organization": {"nullable": True, "allOf": [_ref("Organization")]},
            "documents": {"type": "array", "items": {"type": "integer"}},
            "signature": {**_OBJECT, "nullable": True},
            "certification": {**_OBJECT, "nullable": True},
            "tax_document": {**_OBJECT, "nullable": True},
            "created_at": {"type": "string", "format": "date-time"},
        },
    }
    step = {
        "type": "integer",
        "nullable": True,
        "minimum": 0,
        "maximum": 3,
        "description": "The wizard's step (0 is the welcome page); null once "
        "the wizard is over",
    }
    offer = {
        "type": "object",
        "nullable": True,
        "properties": {
            "choices": {"type": "array", "items": {"type": "integer"}},
            "required": {"type": "array", "items": {"type": "integer"}},
            "preselected": {"type": "array", "items": {"type": "integer"}},
            "locked": {"type": "boolean"},
        },
    }
    return {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message", "field"],
                    "properties": {
                        "code": {
                            "type": "string",
                            "example": "password_mismatch",
                            "description": "Stable across releases; the "
                            "list is in docs/web.md",
                        },
                        "message": {"type": "string"},
                        "field": _NULLABLE_TEXT,
                        "errors": {
                            "type": "array",
                            "description": "When several fields are refused "
                            "at once, each of them in the form's order; the "
                            "error itself is the first",
                            "items": {
                                "type": "object",
                                "required": ["code", "message", "field"],
                                "properties": {
                                    "code": {"type": "string"},
                                    "message": {"type": "string"},
                                    "field": _NULLABLE_TEXT,
                                },
                            },
                        },
                    },
                }
            },
        },
        "Organization": organization,
        "Customer": customer,
        "Journey": journey,
        "JourneyAnswer": {
            "type": "object",
            "required": ["journey"],
            "properties": {"journey": _ref("Journey"), "step": step},
        },
        "SetupAnswer": {
            "type": "object",
            "required": ["journey"],
            "properties": {"journey": _ref("Journey"), "step": step, "offer": offer},
        },
        "PasswordPage": {
            "type": "object",
            "required": ["customer", "password_rule"],
            "properties": {
                "customer": _ref("Customer"),
                "password_rule": {
                    "type": "object",
                    "properties": {
                        "min_length": {"type": "integer"},
                        "message": {"type": "string"},
                    },
                },
            },
        },
        "CustomerAnswer": {
            "type": "object",
            "required": ["customer"],
            "properties": {"customer": _ref("Customer")},
        },
        "Accepted": {
            "type": "object",
            "properties": {
                "message": {"type": "string"},
                "recipient_hint": {"type": "string"},
            },
        },
        "NewPassword": _fields(
            "password", "confirmation", required=("password", "confirmation")
        ),
        "PasswordRequest": _fields("email", required=("email",)),
        "LinkRenewal": {
            "type": "object",
            "required": ["purpose"],
            "properties": {
                "purpose": {
                    "type": "string",
                    "enum": [
                        "create_password",
                        "create_workspace",
                        "start_setup",
                        "tax_document",
                    ],
                }
            },
        },
        "Empty": {"type": "object"},
        "Administrator": _fields("name", "email", required=("name", "email")),
        "WorkspaceName": _fields("workspace_name", required=("workspace_name",)),
        "NewOrganization": _fields("legal_name", "rut", required=("legal_name", "rut")),
        "OrganizationChoice": {
            "type": "object",
            "description": "organization_id for an organization of the "
            "workspace, or legal_name and rut for a new one. Both at once is "
            "refused with json_fields_exclusive (a field sent as null counts "
            "as left out); an organization_id that is not an integer with "
            "json_field_type; a new organization whose RUT the workspace "
            "already has with organization_exists (field rut): choose that "
            "one by its id",
            "properties": {
                "organization_id": {"type": "integer"},
                "legal_name": {"type": "string"},
                "rut": {"type": "string"},
            },
        },
        "Signature": {
            "type": "object",
            "required": ["legal_representative_rut", "signature"],
            "properties": {
                "legal_representative_rut": {
                    "type": "string",
                    "description": "The legal representative's RUT; a "
                    "certificate of another holder is refused",
                },
                "signature": {
                    "type": "string",
                    "format": "byte",
                    "description": "The .pfx or .p12 file, in standard "
                    "base64 (RFC 4648). Whitespace and line breaks (as the "
                    "base64 tool writes them) are ignored and missing '=' "
                    "padding is accepted; any other character is refused "
                    "with signature_not_base64",
                },
                "signature_password": {
                    "type": "string",
                    "format": "password",
                    "description": "Empty or left out: the file is tried "
                    "without a password, and one that has a password is "
                    "refused with signature_password_missing",
                },
            },
        },
        "Documents": {
            "type": "object",
            "required": ["documents"],
            "properties": {
                "documents": {
                    "type": "array",
                    "items": {"type": "integer"},
                    "description": "SII codes of the DTE types, e.g. 33 and 39",
                }
            },
        },
        "TaxDocument": {
            "type": "object",
            "required": ["kind"],
            "properties": {
                "kind": {"type": "string", "enum": ["boleta", "factura"]},
                "legal_name": {"type": "string"},
                "rut": {"type": "string"},
                "business_activity": {"type": "string"},
                "address": {"type": "string"},
            },
        },
    }


def openapi_document(api_path: str = "/api/v1") -> dict[str, Any]:
    """The API's description; ``api_path`` is where the API is served, with
    the prefix the app is mounted at."""
    post = _POST_ERRORS
    paths: dict[str, Any] = {
        "/password": {
            "get": _operation(
                "The account a CREAR CONTRASEÑA link is for", "PasswordPage"
            ),
            "post": _operation(
                "CREAR CONTRASEÑA: set the password",
                "CustomerAnswer",
                body="NewPassword",
                errors=post,
            ),
        },
        "/password-requests": {
            "post": _operation(
                "¿Olvidó su contraseña?: send email 4 again, if the address is "
                "known (the answer is the same either way)",
                "Accepted",
                body="PasswordRequest",
                errors=(400, 413, 415, 429),
                status=202,
                secured=False,
            )
        },
        "/link-renewals": {
            "post": _operation(
                "Send a new link in place of the expired one in Authorization",
                "Accepted",
                body="LinkRenewal",
                errors=(400, 401, 404, 410, 413, 415),
                status=202,
            )
        },
        "/workspace": {
            "get": _operation("Where the workspace wizard stands", "JourneyAnswer")
        },
        "/workspace/activate": {
            "post": _operation("ACTIVAR", "JourneyAnswer", body="Empty", errors=post)
        },
        "/workspace/administrator": {
            "post": _operation(
                "Step 1, CREAR: the administrator",
                "JourneyAnswer",
                body="Administrator",
                errors=(*post, 429),
            )
        },
        "/workspace/name": {
            "post": _operation(
                "Step 2, SIGUIENTE: the workspace's name",
                "JourneyAnswer",
                body="WorkspaceName",
                errors=post,
            )
        },
        "/workspace/organization": {
            "post": _operation(
                "Step 3, FINALIZAR: the organization; email 6 is sent",
                "JourneyAnswer",
                body="NewOrganization",
                errors=post,
            )
        },
        "/setup": {
            "get": _operation(
                "Where the DTE enablement wizard stands, and its documents",
                "SetupAnswer",
            )
        },
        "/setup/start": {
            "post": _operation("COMENZAR", "SetupAnswer", body="Empty", errors=post)
        },
        "/setup/organization": {
            "post": _operation(
                "Step 1: the organization",
                "SetupAnswer",
                body="OrganizationChoice",
                errors=post,
            )
        },
        "/setup/signature": {
            "post": _operation(
                "Step 2: the legal representative's signature and its password",
                "SetupAnswer",
                body="Signature",
                errors=post,
            )
        },
        "/setup/documents": {
            "post": _operation(
                "Step 3: the DTE types; the certification starts",
                "SetupAnswer",
                body="Documents",
                errors=post,
            )
        },
        "/tax-document": {
            "get": _operation("The purchase whose document is asked", "JourneyAnswer"),
            "post": _operation(
                "Boleta, or factura with the company's data",
                "JourneyAnswer",
                body="TaxDocument",
                errors=post,
            ),
        },
        "/certification": {
            "get": _operation(
                "The certification's progress", "JourneyAnswer", errors=(401, 404, 410)
            )
        },
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Haulmer onboarding",
            "version": "1",
            "description": "The actions of the onboarding pages, as JSON. "
            "Errors carry a stable code, a Spanish message and the field at "
            "fault.",
        },
        "servers": [{"url": api_path}],
        "paths": paths,
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {
                "link": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The token of the email's link",
                }
            },
        },
    }
