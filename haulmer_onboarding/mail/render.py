"""Jinja2 rendering of emails and pages through one loader chain.

Templates are looked up in the application's own folders first, then in the
folders plugins declare, then in the core's ``templates/``. An email named
``welcome`` is three templates: ``emails/welcome.subject.txt``,
``emails/welcome.txt`` and ``emails/welcome.html``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

import attrs
from jinja2 import (
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    PackageLoader,
    StrictUndefined,
    select_autoescape,
)

from haulmer_onboarding.business_days import format_date_es

__all__ = ["RenderedEmail", "Renderer"]


@attrs.frozen
class RenderedEmail:
    subject: str
    text: str
    html: str


def _clp(amount: int) -> str:
    """Chilean pesos as customers read them: $1.234.567."""
    return "$" + f"{amount:,}".replace(",", ".")


def _fecha(value: str | date) -> str:
    """A date as customers read it: martes 22 de septiembre de 2026."""
    day = date.fromisoformat(value) if isinstance(value, str) else value
    return format_date_es(day)


class Renderer:
    """Renders the core's, plugins' and the application's templates."""

    def __init__(
        self, template_dirs: Sequence[str] = (), *, auto_reload: bool = False
    ) -> None:
        """``auto_reload`` looks at the template files' times on every use, to
        pick up edits without a restart (development); off, each template is
        read once per process, which saves a few ``stat`` calls per page."""
        loaders: list[Any] = [FileSystemLoader(d) for d in template_dirs]
        loaders.append(PackageLoader("haulmer_onboarding", "templates"))
        self.environment = Environment(
            loader=ChoiceLoader(loaders),
            autoescape=select_autoescape(["html"]),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=auto_reload,
        )
        self.environment.filters["clp"] = _clp
        self.environment.filters["fecha"] = _fecha

    def email(self, name: str, context: Mapping[str, Any]) -> RenderedEmail:
        def render(suffix: str) -> str:
            template = self.environment.get_template(f"emails/{name}{suffix}")
            return template.render(context)

        subject = " ".join(render(".subject.txt").split())
        return RenderedEmail(subject=subject, text=render(".txt"), html=render(".html"))

    def page(self, name: str, context: Mapping[str, Any]) -> str:
        return self.environment.get_template(f"pages/{name}.html").render(context)
