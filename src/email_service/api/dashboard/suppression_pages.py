"""The suppressions page: search the list, add an address, remove one."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, request, url_for

from email_service.api.dashboard.blueprint import blueprint, render, services
from email_service.errors import NotFound, ValidationFailed
from email_service.services import suppressions

SUPPRESSIONS_PER_PAGE = 50


@blueprint.get("/suppressions")
def suppression_list() -> Any:
    search = request.args.get("q", "").strip() or None
    after = request.args.get("after") or None
    for field, value in (("q", search), ("after", after)):
        if value is not None and len(value) > 320:
            raise ValidationFailed(f"invalid {field}", [{"field": field, "reason": "at most 320 characters"}])
    found = suppressions.page(services(), after=after, limit=SUPPRESSIONS_PER_PAGE, address_part=search)
    more = found[-1].email if len(found) == SUPPRESSIONS_PER_PAGE else None
    return render("suppressions.html", suppressions=found, search=search, more=more)


@blueprint.post("/suppressions")
def suppress() -> Any:
    email = request.form.get("email", "").strip()
    try:
        added = suppressions.add(services(), email)
    except ValidationFailed as exc:
        flash(f"{email!r} was not added: {exc.details[0]['reason'] if exc.details else exc.message}", "error")
    else:
        flash(f"{email} is suppressed." if added else f"{email} was already suppressed.")
    return redirect(url_for("dashboard.suppression_list"), code=303)


@blueprint.post("/suppressions/remove")
def unsuppress() -> Any:
    email = request.form.get("email", "")
    try:
        suppressions.remove(services(), email)
    except (NotFound, ValidationFailed) as exc:
        flash(exc.message, "error")
    else:
        flash(f"{email} is no longer suppressed: jobs may send to it again.")
    return redirect(url_for("dashboard.suppression_list", q=request.form.get("q") or None), code=303)
