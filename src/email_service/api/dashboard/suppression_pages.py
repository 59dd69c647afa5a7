"""The suppressions page: search a list, add an address, remove one. The list is the viewer's account's; an
operator also opens the shared list (``scope=shared``, in the query of the page and in its forms)."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, request, url_for

from email_service.api.dashboard.blueprint import blueprint, render, services, viewer
from email_service.errors import NotFound, ValidationFailed
from email_service.services import suppressions

SUPPRESSIONS_PER_PAGE = 50
SHARED = "shared"  # the value of `scope` that names the shared list


@blueprint.get("/suppressions")
def suppression_list() -> Any:
    search = request.args.get("q", "").strip() or None
    after = request.args.get("after") or None
    for field, value in (("q", search), ("after", after)):
        if value is not None and len(value) > 320:
            raise ValidationFailed(f"invalid {field}", [{"field": field, "reason": "at most 320 characters"}])
    scope = _scope(request.args)
    account = _list_of(scope)
    found = suppressions.page(
        services(), account=account, after=after, limit=SUPPRESSIONS_PER_PAGE, address_part=search
    )
    more = found[-1].email if len(found) == SUPPRESSIONS_PER_PAGE else None
    return render(
        "suppressions.html", suppressions=found, search=search, more=more, scope=scope, shared=account is None
    )


@blueprint.post("/suppressions")
def suppress() -> Any:
    email = request.form.get("email", "").strip()
    scope = _scope(request.form)
    try:
        added = suppressions.add(services(), email, account=_list_of(scope))
    except ValidationFailed as exc:
        flash(f"{email!r} was not added: {exc.details[0]['reason'] if exc.details else exc.message}", "error")
    else:
        flash(f"{email} is suppressed." if added else f"{email} was already on this list.")
    return redirect(url_for("dashboard.suppression_list", scope=scope), code=303)


@blueprint.post("/suppressions/remove")
def unsuppress() -> Any:
    email = request.form.get("email", "")
    scope = _scope(request.form)
    try:
        suppressions.remove(services(), email, account=_list_of(scope))
    except (NotFound, ValidationFailed) as exc:
        flash(exc.message, "error")
    else:
        flash(f"{email} is no longer suppressed by this list: jobs may send to it again, unless another list holds it.")
    return redirect(url_for("dashboard.suppression_list", q=request.form.get("q") or None, scope=scope), code=303)


def _scope(fields: Any) -> str | None:
    """``shared`` when the page or form asks for the shared list, else None (the viewer's account's)."""
    scope = fields.get("scope") or None
    if scope not in (None, SHARED):
        raise ValidationFailed("invalid scope", [{"field": "scope", "reason": f"{SHARED!r} or absent"}])
    return scope


def _list_of(scope: str | None) -> str | None:
    """The account whose list the page works on; None for the shared list (Forbidden unless an operator)."""
    return suppressions.list_of(viewer().caller, shared=scope == SHARED)
