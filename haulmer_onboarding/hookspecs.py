"""The plugin contract, and the typed facade through which the core uses it.

Plugins are found through the entry-point group ``haulmer_onboarding`` (the
same name marks the hooks), plus the built-in plugins listed in
``BUILTIN_PLUGINS``, which are registered like any other. The rest of the
core never calls ``pm.hook``: it calls the methods of ``Plugins``.
"""

from __future__ import annotations

import importlib
import itertools
import logging
from collections.abc import Iterable, Mapping, Sequence
from importlib.metadata import version as distribution_version
from typing import Any

import pluggy

from haulmer_onboarding.actions import EnablementAction
from haulmer_onboarding.certification import CertificationStep
from haulmer_onboarding.errors import ConflictError, PluginError
from haulmer_onboarding.models import (
    DocumentOffer,
    DtePolicy,
    JourneyEvent,
    Product,
    Purchase,
)
from haulmer_onboarding.rut import Rut
from haulmer_onboarding.signatures import SignatureInfo

__all__ = [
    "BUILTIN_PLUGINS",
    "PROJECT_NAME",
    "Plugins",
    "hookimpl",
    "hookspec",
]

PROJECT_NAME = "haulmer_onboarding"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

BUILTIN_PLUGINS: tuple[str, ...] = ("haulmer_onboarding.plugins.journal",)

logger = logging.getLogger("haulmer_onboarding")


class HookSpecs:
    """Every hook a plugin may implement."""

    @hookspec
    def onboarding_products(self) -> Sequence[Product]:
        """Declare the products this plugin stands for, with their item codes."""
        raise NotImplementedError

    @hookspec
    def onboarding_dte_policy(
        self, product: str, purchase: Purchase
    ) -> DtePolicy | None:
        """The documents ``product`` needs and offers for ``purchase``.

        Return ``None`` for products this plugin does not own.
        """
        raise NotImplementedError

    @hookspec
    def onboarding_certification_steps(
        self, product: str, documents: frozenset[int]
    ) -> Sequence[CertificationStep] | None:
        """The ordered SII certification steps ``product`` needs.

        ``documents`` are the SII codes being enabled. Return ``None`` for
        products this plugin does not own.
        """
        raise NotImplementedError

    @hookspec
    def onboarding_template_dirs(self) -> Sequence[str]:
        """Folders holding ``emails/`` and ``pages/`` templates to add or
        override; they are searched after the application's own folders."""
        raise NotImplementedError

    @hookspec
    def onboarding_enablement_actions(
        self, product: str
    ) -> Sequence[EnablementAction] | None:
        """What ``product`` does once the organization is enabled.

        Each action is run by the worker, retried with backoff, and its
        outcome recorded once and emailed. Return ``None`` for products this
        plugin does not own.
        """
        raise NotImplementedError

    @hookspec
    def onboarding_validate_organization(
        self, legal_name: str, rut: Rut, products: Sequence[str]
    ) -> None:
        """Refuse an organization by raising ``ValidationError`` (Spanish
        message, a code of the plugin's); return to accept it."""
        raise NotImplementedError

    @hookspec
    def onboarding_validate_signature(
        self, signature: SignatureInfo, products: Sequence[str]
    ) -> None:
        """Refuse a signature by raising ``SignatureError``; return to
        accept it. Runs after the core's own checks."""
        raise NotImplementedError

    @hookspec
    def onboarding_sandbox_routes(self) -> Sequence[tuple[str, Any]]:
        """``(product, [starlette routes])`` serving the product's service
        contract in the sandbox, for demos; mounted at ``/<product>``."""
        raise NotImplementedError

    @hookspec
    def onboarding_journey_event(self, event: JourneyEvent) -> None:
        """Observe a journey event after it was committed (audit, analytics).

        An observer that raises is logged and ignored: it cannot undo a step.
        """
        raise NotImplementedError


def _merge_steps(
    lists: Iterable[Sequence[CertificationStep]],
) -> list[CertificationStep]:
    """One order that keeps every plugin's order (a stable topological sort).

    A step id declared by two plugins appears once; ties go to the step that
    was declared first.
    """
    steps: dict[str, CertificationStep] = {}
    after: dict[str, set[str]] = {}
    for sequence in lists:
        for index, step in enumerate(sequence):
            steps.setdefault(step.id, step)
            after.setdefault(step.id, set())
            if index:
                after[step.id].add(sequence[index - 1].id)

    order: list[CertificationStep] = []
    placed: set[str] = set()
    while len(order) < len(steps):
        ready = [
            step_id
            for step_id in steps
            if step_id not in placed and after[step_id] <= placed
        ]
        if not ready:
            raise PluginError(
                "Los pasos de certificación declarados por los productos se "
                "contradicen.",
                code="certification_steps_cycle",
            )
        order.append(steps[ready[0]])
        placed.add(ready[0])
    return order


class Plugins:
    """The loaded plugins, seen through typed methods."""

    def __init__(
        self,
        *,
        blocked: Iterable[str] = (),
        load_entry_points: bool = True,
        extra: Iterable[object] = (),
    ) -> None:
        self.pm = pluggy.PluginManager(PROJECT_NAME)
        self.pm.add_hookspecs(HookSpecs)
        for name in blocked:
            self.pm.set_blocked(name)

        for module_name in BUILTIN_PLUGINS:
            if not self.pm.is_blocked(module_name):
                self.pm.register(importlib.import_module(module_name), module_name)
        if load_entry_points:
            self.pm.load_setuptools_entrypoints(PROJECT_NAME)
        for plugin in extra:
            self.pm.register(plugin)

        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise PluginError(str(exc), code="plugin_unknown_hook") from exc
        self._products = self._collect_products()

    def _collect_products(self) -> dict[str, Product]:
        products: dict[str, Product] = {}
        for declared in self.pm.hook.onboarding_products():
            for product in declared:
                if product.code in products:
                    raise PluginError(
                        f"product {product.code!r} is declared twice",
                        code="product_duplicate",
                    )
                products[product.code] = product
        return products

    # -- products --------------------------------------------------------

    @property
    def products(self) -> Mapping[str, Product]:
        return dict(self._products)

    def products_for_items(self, item_codes: Iterable[str]) -> tuple[str, ...]:
        """The codes of the products a purchase's items stand for, sorted."""
        wanted = set(item_codes)
        return tuple(
            sorted(
                code
                for code, product in self._products.items()
                if product.item_codes & wanted
            )
        )

    # -- documents -------------------------------------------------------

    def document_offer(
        self, products: Sequence[str], purchase: Purchase
    ) -> DocumentOffer:
        """The documents step for ``products``: the union of their policies.

        Required documents of every product are enabled. A locked policy (a
        point of sale) fixes its own set: those documents are shown checked
        and cannot be changed, while the other products' optional documents
        stay selectable. Two locked policies that disagree raise
        ``ConflictError``: the purchase cannot be served as it is.
        """
        policies: list[tuple[str, DtePolicy]] = []
        for product in products:
            answers = self.pm.hook.onboarding_dte_policy(
                product=product, purchase=purchase
            )
            policies.extend((product, answer) for answer in answers)

        locked = [(p, policy) for p, policy in policies if policy.locked]
        for (first_product, first), (other_product, other) in itertools.pairwise(
            locked
        ):
            if other.required != first.required:
                raise ConflictError(
                    code="documents_lock_conflict",
                    message=(
                        f"Los productos {first_product} y {other_product} "
                        "exigen conjuntos de documentos distintos. "
                        "Contacta a soporte."
                    ),
                )

        required = frozenset().union(*(p.required for _, p in policies))
        optional = (
            frozenset().union(*(p.optional for _, p in policies if not p.locked))
            - required
        )
        preselected = frozenset().union(*(p.preselected for _, p in policies))
        return DocumentOffer(
            required=required,
            optional=optional,
            preselected=(preselected & optional) | required,
            locked=bool(locked),
        )

    # -- certification ---------------------------------------------------

    def certification_steps(
        self, products: Sequence[str], documents: frozenset[int]
    ) -> list[CertificationStep]:
        declared: list[Sequence[CertificationStep]] = []
        for product in products:
            declared.extend(
                self.pm.hook.onboarding_certification_steps(
                    product=product, documents=documents
                )
            )
        steps = _merge_steps(declared)
        if not steps:
            raise PluginError(
                "No hay pasos de certificación para estos productos.",
                code="certification_steps_missing",
            )
        return steps

    # -- templates and events --------------------------------------------

    # -- after enablement, validation, sandbox ------------------------------

    def enablement_actions(self, product: str) -> list[EnablementAction]:
        actions: list[EnablementAction] = []
        for declared in self.pm.hook.onboarding_enablement_actions(product=product):
            actions.extend(declared)
        ids = [action.id for action in actions]
        if len(set(ids)) != len(ids):
            raise PluginError(
                f"product {product!r} declares an action id twice: {ids}",
                code="action_duplicate",
            )
        return actions

    def validate_organization(
        self, legal_name: str, rut: Rut, products: Sequence[str]
    ) -> None:
        self.pm.hook.onboarding_validate_organization(
            legal_name=legal_name, rut=rut, products=list(products)
        )

    def validate_signature(
        self, signature: SignatureInfo, products: Sequence[str]
    ) -> None:
        self.pm.hook.onboarding_validate_signature(
            signature=signature, products=list(products)
        )

    def sandbox_routes(self) -> dict[str, list[Any]]:
        routes: dict[str, list[Any]] = {}
        for declared in self.pm.hook.onboarding_sandbox_routes():
            for product, product_routes in declared:
                routes.setdefault(product, []).extend(product_routes)
        return routes

    def template_dirs(self) -> list[str]:
        dirs: list[str] = []
        for declared in self.pm.hook.onboarding_template_dirs():
            dirs.extend(str(d) for d in declared)
        return dirs

    def notify(self, event: JourneyEvent) -> None:
        for impl in self.pm.hook.onboarding_journey_event.get_hookimpls():
            try:
                impl.function(event=event)
            except Exception:
                logger.exception(
                    "plugin %s failed to observe %s", impl.plugin_name, event.kind
                )

    def describe(self) -> list[dict[str, Any]]:
        """Each loaded plugin: its name, distribution version and hooks."""
        described = []
        dists = {id(p): d for p, d in self.pm.list_plugin_distinfo()}
        for name, plugin in self.pm.list_name_plugin():
            if plugin is None:
                continue
            dist = dists.get(id(plugin))
            if dist is not None:
                version = dist.version
            else:
                version = distribution_version("haulmer-onboarding")
            hooks = sorted(
                caller.name for caller in self.pm.get_hookcallers(plugin) or []
            )
            described.append({"name": name, "version": version, "hooks": hooks})
        return described
