"""Request and response bodies of /api/templates."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict

MAX_TEMPLATE_PART = 500_000

WELCOME_EXAMPLE: JsonDict = {
    "name": "welcome",
    "subject": "Welcome to {{ town }}, {{ name }}",
    "text": "Hello {{ name }},\n\n{{ content }}\n\nYour code: {{ code }}\n",
    "html": '{% extends "base.html" %}{% block content %}<p>Hello {{ name }},</p><p>{{ content }}</p>'
    "<p>Your code: <b>{{ code }}</b></p>{% endblock %}",
}


class TemplateFieldsBody(BaseModel):
    """A template's sources, each a Jinja template: `eml` alone, or `subject` with `text` and/or `html`."""

    model_config = ConfigDict(extra="forbid")

    subject: str | None = Field(
        None, description="Subject line; the job's subject when absent. No variable may add a line break.",
        max_length=2000,
    )  # fmt: skip
    text: str | None = Field(None, description="Plain-text body.", max_length=MAX_TEMPLATE_PART)
    html: str | None = Field(
        None,
        description="HTML body; variables are autoescaped. Without `text`, the text part is derived from it. "
        'May `{% extends "base.html" %}` (a layout of the templates folders).',
        max_length=MAX_TEMPLATE_PART,
    )
    eml: str | None = Field(
        None,
        description="An .eml source as in the templates folder: header lines, a blank line, the body.",
        max_length=MAX_TEMPLATE_PART,
    )


class TemplateCreateBody(TemplateFieldsBody):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": WELCOME_EXAMPLE})

    name: str = Field(description="Name jobs use, matching ^[a-z0-9][a-z0-9_-]{0,63}$.", max_length=64)


class TemplatePath(BaseModel):
    name: str = Field(description="Template name.", pattern=r"^[A-Za-z0-9_-]{1,64}$")


class TemplateVersionQuery(BaseModel):
    version: int | None = Field(
        None, ge=1, le=2_147_483_647, description="A stored version; the current one when absent."
    )


class TemplateScopeQuery(BaseModel):
    shared: bool = Field(
        False,
        description="Change the shared template of this name (every account uses it) instead of the calling "
        "account's own: operators only, a key with the admin role (403 otherwise). With authentication off "
        "there are no accounts and every template is shared, with or without it.",
    )


class TemplateView(BaseModel):
    name: str
    version: int | None = Field(
        description="Stored version (each change adds one, numbered per account, and for the shared templates); "
        "null for a template file."
    )
    source: str = Field(description="`stored` (through this API) or `file` (in the templates folder).")
    shared: bool = Field(
        description="True for a template every account uses, which only operators change: a shared stored "
        "template or a file. False for the calling account's own."
    )
    subject: str | None
    text: str | None
    html: str | None
    eml: str | None
    created_at: datetime | None = Field(description="When this version was stored; null for a file.")


class TemplateList(BaseModel):
    items: list[TemplateView]


class PreviewBody(BaseModel):
    """Who the preview is for and what the job would give the template: the template sees `to`, `from`,
    `name`, `subject`, `content` and `date`, with `variables` over them, as a job's recipient does."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"example": {"variables": {"town": "Hawkins", "code": "011"}, "name": "Eleven"}},
    )

    variables: dict[str, Any] | None = Field(
        None,
        description="Template variables, as a job's `variables` and its recipient's own would give them. They win "
        'over the built-in names: `{"variables": {"name": "Zoé"}}` renders `{{ name }}` as Zoé, as it would in a job.',
    )
    subject: str = Field("Preview", description="The job's subject (`subject`).", max_length=998)
    content: str = Field("", description="The job's content (`content`).")
    email: str = Field("preview@example.com", description="The recipient's address (`to`).", max_length=320)
    name: str | None = Field(
        None, description="The recipient's name: `name`, unless `variables` has its own `name`.", max_length=256
    )


class DraftPreviewBody(PreviewBody):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {"template": {"subject": "Hi {{ name }}", "html": "<p>{{ content }}</p>"}, "name": "Will"}
        },
    )

    template: TemplateFieldsBody = Field(description="The unsaved template to render.")


class PreviewView(BaseModel):
    subject: str
    text: str | None = Field(description="The text part (derived from the HTML when the template has none).")
    html: str | None
