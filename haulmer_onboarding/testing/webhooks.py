"""Call the purchase webhook as a shop does: a JSON body, signed.

``webhook_body`` turns a ``Purchase`` into the JSON the webhook takes;
``signed_headers`` signs exact bytes; ``post_purchase`` does both and sends
the request with httpx. A shop written in Python may use them as they are.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import httpx

from haulmer_onboarding.models import Purchase
from haulmer_onboarding.web.intake import SIGNATURE_HEADER, signature_header

__all__ = ["PATH", "encode", "post_purchase", "signed_headers", "webhook_body"]

#: Where ``create_app`` serves the webhook, under the app's mount point.
PATH = "/webhooks/purchases"


def webhook_body(purchase: Purchase) -> dict[str, Any]:
    """The webhook's JSON for ``purchase``."""
    return {
        "order_number": purchase.order_number,
        "email": purchase.email,
        "buyer_name": purchase.buyer_name,
        "items": [
            {
                "code": item.code,
                "name": item.name,
                "quantity": item.quantity,
                "unit_price": item.unit_price,
            }
            for item in purchase.items
        ],
        "legal_name": purchase.legal_name,
        "rut": purchase.rut,
        "changes_legal_name": purchase.changes_legal_name,
        "paid_at": purchase.paid_at.isoformat() if purchase.paid_at else None,
    }


def encode(body: Purchase | dict[str, Any] | bytes) -> bytes:
    """The bytes sent for ``body``: a purchase or a mapping as UTF-8 JSON."""
    if isinstance(body, bytes):
        return body
    data = webhook_body(body) if isinstance(body, Purchase) else body
    return json.dumps(data, ensure_ascii=False).encode("utf-8")


def signed_headers(
    body: bytes, secrets: str | Sequence[str], timestamp: int | None = None
) -> dict[str, str]:
    """Headers for sending ``body`` signed with ``secrets`` (now, or at
    ``timestamp`` in unix seconds)."""
    return {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: signature_header(body, secrets, timestamp),
    }


def post_purchase(
    base_url: str,
    body: Purchase | dict[str, Any] | bytes,
    secrets: str | Sequence[str],
    *,
    timestamp: int | None = None,
    client: httpx.Client | None = None,
) -> httpx.Response:
    """``POST`` ``body`` to the webhook under ``base_url``, signed."""
    data = encode(body)
    headers = signed_headers(data, secrets, timestamp)
    url = base_url.rstrip("/") + PATH
    if client is not None:
        return client.post(url, content=data, headers=headers)
    return httpx.post(url, content=data, headers=headers)
