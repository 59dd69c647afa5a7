"""/api/templates: stored templates (versioned; an account's own or shared), template files, and previews."""

from __future__ import annotations

from typing import Any

from flask import current_app
from flask_openapi3.blueprint import APIBlueprint
from flask_openapi3.models.tag import Tag
from werkzeug.routing import BaseConverter

from email_service.api.auth import current_account, require_admin
from email_service.api.errors import API_KEY, BODY_ERRORS, COMMON_ERRORS
from email_service.api.schemas import ErrorBody
from email_service.api.template_schemas import (
    DraftPreviewBody,
    PreviewBody,
    PreviewView,
    TemplateCreateBody,
    TemplateFieldsBody,
    TemplateList,
    TemplatePath,
    TemplateScopeQuery,
    TemplateVersionQuery,
    TemplateView,
)
from email_service.message.rendering import TemplateSource
from email_service.services import Services, templates
from email_service.services.templates import TemplateFields, TemplateRecord

templates_tag = Tag(
    name="templates",
    description="Templates jobs render: stored through this API (each change a new version, kept for the jobs "
    "that use it) or files in the templates folder (read-only here). A stored template is the account's own "
    "or shared: an account finds a name among its own templates, then the shared ones, then the files, and "
    "never sees another account's. What an account stores is its own; shared templates are changed by "
    "operators (`?shared=true` with a key of the admin role). With authentication off every template is shared.",
)
blueprint = APIBlueprint(
    "templates", __name__, url_prefix="/api/templates", abp_tags=[templates_tag], abp_security=API_KEY
)

# Templates are named in paths: an unknown one (or another account's) is a 404, a taken name a 409...
ERRORS: dict[int | str, Any] = {404: ErrorBody, 409: ErrorBody, **BODY_ERRORS}
# ... and a change of a shared template without the admin role a 403.
CHANGE_ERRORS: dict[int | str, Any] = {403: ErrorBody, **ERRORS}


class TemplateNameConverter(BaseConverter):
    """A template name in a path; never `preview`, the address of the draft preview, so that its
    OPTIONS answer lists the draft preview's methods only."""

    regex = r"(?!preview(?:/|$))[A-Za-z0-9_-]{1,64}"


def _services() -> Services:
    services: Services = current_app.extensions["email_service"]
    return services


@blueprint.get(
    "/",
    strict_slashes=False,
    summary="List templates",
    description="The templates the account uses, each at its current version: its own, then the shared ones "
    "(`shared`) it has no template of the same name for, then the template files.",
    responses={200: TemplateList, **COMMON_ERRORS},
)
def list_templates() -> Any:
    records = templates.list_all(_services(), account=current_account())
    return TemplateList(items=[_view(r) for r in records]).model_dump(mode="json")


@blueprint.post(
    "/",
    strict_slashes=False,
    summary="Store a new template",
    description="Version 1 of a template of the account's own (a shared one with `?shared=true`, admin role). "
    "Every part is compiled first: a syntax error is a 422 naming the part and line. 409 when the scope written "
    "(the account's own templates, or the shared ones) has a template of that name, or a file has it (change a "
    "template with PUT). The name of a shared template is free for an account: its own then replaces the shared "
    "one for it alone.",
    responses={201: TemplateView, **CHANGE_ERRORS},
)
def create_template(query: TemplateScopeQuery, body: TemplateCreateBody) -> Any:
    record = templates.create(_services(), body.name, _fields(body), scope=_scope(query))
    return _view(record).model_dump(mode="json"), 201


@blueprint.post(
    "/preview",
    summary="Preview an unsaved template",
    description="Renders a draft as the recipient described would receive it; a render error is a 422 whose "
    "detail has the part (`template.html`...), the `line` and the undefined `variable`.",
    responses={200: PreviewView, **ERRORS},
)
def preview_draft(body: DraftPreviewBody) -> Any:
    services = _services()
    source = templates.draft_source(services, _fields(body.template))
    return _preview(services, source, body)


@blueprint.get(
    "/<template_name:name>",
    summary="Read a template",
    description="The account's own template of that name, else the shared one, else the file: its current "
    "version, or `?version=N`. Another account's template is a 404.",
    responses={200: TemplateView, **ERRORS},
)
def get_template(path: TemplatePath, query: TemplateVersionQuery) -> Any:
    record = templates.get(_services(), path.name, query.version, account=current_account())
    return _view(record).model_dump(mode="json")


@blueprint.put(
    "/<template_name:name>",
    summary="Change (or create) a template",
    description="Stores a new version of the account's own template (of the shared one with `?shared=true`, "
    "admin role); jobs accepted before keep rendering the version they recorded. 201 when the template did not "
    "exist: a PUT naming a shared template makes the account's own, which from then on replaces the shared one "
    "for that account alone (the other accounts keep the shared one).",
    responses={200: TemplateView, 201: TemplateView, **CHANGE_ERRORS},
)
def update_template(path: TemplatePath, query: TemplateScopeQuery, body: TemplateFieldsBody) -> Any:
    record, created = templates.update(_services(), path.name, _fields(body), scope=_scope(query))
    return _view(record).model_dump(mode="json"), 201 if created else 200


@blueprint.delete(
    "/<template_name:name>",
    summary="Delete a template",
    description="Deletes the account's own template (the shared one with `?shared=true`, admin role): new jobs "
    "can no longer use it (the account's jobs find the shared one of that name again, if any); jobs already "
    "accepted with it still send. 403 for a shared template without `?shared=true`, 409 for a template file "
    "(remove the file instead).",
    responses={204: None, **CHANGE_ERRORS},
)
def delete_template(path: TemplatePath, query: TemplateScopeQuery) -> Any:
    templates.delete(_services(), path.name, scope=_scope(query))
    return "", 204


@blueprint.get(
    "/<template_name:name>/versions",
    summary="A stored template's versions",
    description="Those of the account's own template of that name, else of the shared one; newest first.",
    responses={200: TemplateList, **ERRORS},
)
def list_versions(path: TemplatePath) -> Any:
    records = templates.versions(_services(), path.name, account=current_account())
    return TemplateList(items=[_view(r) for r in records]).model_dump(mode="json")


@blueprint.post(
    "/<template_name:name>/preview",
    summary="Preview a template",
    description="Renders the template the account would use by that name (its current version) with the "
    "variables given; a render error is a 422 whose detail has the part, the `line` and the undefined `variable`.",
    responses={200: PreviewView, **ERRORS},
)
def preview_template(path: TemplatePath, body: PreviewBody) -> Any:
    services = _services()
    record = templates.get(services, path.name, account=current_account())
    return _preview(services, record.source, body)


def _preview(services: Services, source: TemplateSource, body: PreviewBody) -> Any:
    preview = templates.preview(
        services,
        source,
        variables=body.variables,
        subject=body.subject,
        content=body.content,
        email=body.email,
        name=body.name,
    )
    return PreviewView(subject=preview.subject, text=preview.text, html=preview.html).model_dump(mode="json")


def _scope(query: TemplateScopeQuery) -> str | None:
    """The templates a change goes to: the shared ones with ``?shared=true`` (operators only), else the calling
    account's own; with authentication off there is no account, so the shared ones."""
    if query.shared:
        require_admin("changing a shared template")
        return None
    return current_account()


def _fields(body: TemplateFieldsBody) -> TemplateFields:
    return TemplateFields(subject=body.subject, text=body.text, html=body.html, eml=body.eml)


def _view(record: TemplateRecord) -> TemplateView:
    source = record.source
    return TemplateView(
        name=source.name,
        version=source.version,
        source=source.origin,
        shared=record.shared,
        subject=source.subject,
        text=source.text,
        html=source.html,
        eml=source.eml,
        created_at=record.created_at,
    )
