"""The templates pages: the list, one template's versions, and a preview rendered from a form. Each shows
the viewer's account's own templates, the shared ones and the files, as the API does; never another
account's."""

from __future__ import annotations

import json
from typing import Any

from flask import request
from pydantic import ValidationError

from email_service.api import json_body
from email_service.api.dashboard.blueprint import blueprint, render, services, viewer
from email_service.api.template_schemas import PreviewBody
from email_service.errors import MalformedJSON, ValidationFailed
from email_service.message.rendering import is_valid_template_name
from email_service.services import templates

# What the preview form starts with: the defaults of POST /api/templates/<name>/preview.
PREVIEW_DEFAULTS = PreviewBody()


@blueprint.get("/templates")
def template_list() -> Any:
    return render("templates.html", templates=templates.list_all(services(), account=viewer().caller.account))


@blueprint.route("/templates/<name>", methods=["GET", "POST"])
def template(name: str) -> Any:
    """A template and its versions; a POST renders the preview of the version chosen in the form."""
    if not is_valid_template_name(name):
        raise ValidationFailed("invalid template name", [{"field": "name", "reason": "letters, digits, _ and -"}])
    account = viewer().caller.account
    current = templates.get(services(), name, account=account)
    history = templates.versions(services(), name, account=account) if current.source.origin == "stored" else []
    form = {
        "version": str(current.source.version or ""),
        "subject": PREVIEW_DEFAULTS.subject,
        "content": PREVIEW_DEFAULTS.content,
        "email": PREVIEW_DEFAULTS.email,
        "name": "",
        "variables": "{}",
    }
    preview, errors = None, []
    if request.method == "POST":
        form.update({field: request.form.get(field, "") for field in form})
        try:
            body = _preview_body(form)
            version = int(form["version"]) if form["version"] else None
            chosen = templates.get(services(), name, version, account=account) if version is not None else current
            preview = templates.preview(
                services(),
                chosen.source,
                variables=body.variables,
                subject=body.subject,
                content=body.content,
                email=body.email,
                name=body.name,
            )
        except ValidationFailed as exc:
            errors = exc.details or [{"field": "template", "reason": exc.message}]
    status = 422 if errors else 200
    return render("template.html", status, current=current, history=history, form=form, preview=preview, errors=errors)


def _preview_body(form: dict[str, str]) -> PreviewBody:
    """The form as the API's preview body, so both check the same limits."""
    if form["version"] and not (form["version"].isdigit() and len(form["version"]) <= 9):
        raise ValidationFailed("invalid version", [{"field": "version", "reason": "a version number"}])
    try:
        variables = json_body.loads(form["variables"] or "{}")
    except json.JSONDecodeError as exc:
        raise ValidationFailed("invalid variables", [{"field": "variables", "reason": f"not JSON: {exc}"}]) from None
    except MalformedJSON as exc:  # a non-finite number: named within the variables
        details = [{**d, "field": f"variables.{d['field']}".removesuffix(".body")} for d in exc.details]
        raise ValidationFailed("invalid variables", details) from None
    if not isinstance(variables, dict):
        raise ValidationFailed("invalid variables", [{"field": "variables", "reason": 'a JSON object: {"name": …}'}])
    try:
        return PreviewBody(
            variables=variables,
            subject=form["subject"],
            content=form["content"],
            email=form["email"],
            name=form["name"] or None,
        )
    except ValidationError as exc:
        details = [{"field": ".".join(map(str, e["loc"])) or "form", "reason": e["msg"]} for e in exc.errors()]
        raise ValidationFailed("invalid preview", details) from None
