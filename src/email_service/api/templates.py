"""/api/templates: stored templates (versioned), template files, and previews."""

from __future__ import annotations

from typing import Any

from flask import current_app
from flask_openapi3.blueprint import APIBlueprint
from flask_openapi3.models.tag import Tag
from werkzeug.routing import BaseConverter

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
    TemplateVersionQuery,
    TemplateView,
)
from email_service.message.rendering import TemplateSource
from email_service.services import Services, templates
from email_service.services.templates import TemplateFields, TemplateRecord

templates_tag = Tag(
    name="templates",
    description="Templates jobs render: stored through this API (each change a new version, kept for the jobs "
    "that use it) or files in the templates folder (read-only here).",
)
blueprint = APIBlueprint(
    "templates", __name__, url_prefix="/api/templates", abp_tags=[templates_tag], abp_security=API_KEY
)

# Templates are named in paths: an unknown one is a 404, a taken name a 409.
ERRORS: dict[int | str, Any] = {404: ErrorBody, 409: ErrorBody, **BODY_ERRORS}


class TemplateNameConverter(BaseConverter):
    """A template name in a path; never `preview`, the address of the draft preview, so that its
    OPTIONS answer lists the draft preview's methods only."""

    regex = r"(?!preview(?:/|$))[A-Za-z0-9_-]{1,64}"


def _services() -> Services:
    services: Services = current_app.extensions["email_service"]
    return services


@blueprint.get("/", strict_slashes=False, summary="List templates", responses={200: TemplateList, **COMMON_ERRORS})
def list_templates() -> Any:
    return TemplateList(items=[_view(r) for r in templates.list_all(_services())]).model_dump(mode="json")


@blueprint.post(
    "/",
    strict_slashes=False,
    summary="Store a new template",
    description="Version 1 of a template. Every part is compiled first: a syntax error is a 422 naming the part "
    "and line. 409 when the name is taken (change a template with PUT).",
    responses={201: TemplateView, **ERRORS},
)
def create_template(body: TemplateCreateBody) -> Any:
    record = templates.create(_services(), body.name, _fields(body))
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
    description="Its current version, or `?version=N`.",
    responses={200: TemplateView, **ERRORS},
)
def get_template(path: TemplatePath, query: TemplateVersionQuery) -> Any:
    return _view(templates.get(_services(), path.name, query.version)).model_dump(mode="json")


@blueprint.put(
    "/<template_name:name>",
    summary="Change (or create) a template",
    description="Stores a new version; jobs accepted before keep rendering the version they recorded. "
    "201 when the template did not exist.",
    responses={200: TemplateView, 201: TemplateView, **ERRORS},
)
def update_template(path: TemplatePath, body: TemplateFieldsBody) -> Any:
    record, created = templates.update(_services(), path.name, _fields(body))
    return _view(record).model_dump(mode="json"), 201 if created else 200


@blueprint.delete(
    "/<template_name:name>",
    summary="Delete a template",
    description="New jobs can no longer use it; jobs already accepted with it still send. 409 for a template "
    "file (remove the file instead).",
    responses={204: None, **ERRORS},
)
def delete_template(path: TemplatePath) -> Any:
    templates.delete(_services(), path.name)
    return "", 204


@blueprint.get(
    "/<template_name:name>/versions",
    summary="A stored template's versions",
    description="Newest first.",
    responses={200: TemplateList, **ERRORS},
)
def list_versions(path: TemplatePath) -> Any:
    records = templates.versions(_services(), path.name)
    return TemplateList(items=[_view(r) for r in records]).model_dump(mode="json")


@blueprint.post(
    "/<template_name:name>/preview",
    summary="Preview a template",
    description="Renders the template (its current version) with the variables given; a render error is a 422 "
    "whose detail has the part, the `line` and the undefined `variable`.",
    responses={200: PreviewView, **ERRORS},
)
def preview_template(path: TemplatePath, body: PreviewBody) -> Any:
    services = _services()
    record = templates.get(services, path.name)
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


def _fields(body: TemplateFieldsBody) -> TemplateFields:
    return TemplateFields(subject=body.subject, text=body.text, html=body.html, eml=body.eml)


def _view(record: TemplateRecord) -> TemplateView:
    source = record.source
    return TemplateView(
        name=source.name,
        version=source.version,
        source=source.origin,
        subject=source.subject,
        text=source.text,
        html=source.html,
        eml=source.eml,
        created_at=record.created_at,
    )
