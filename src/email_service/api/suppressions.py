"""/api/suppressions: the addresses nothing is sent to; /unsubscribe: the one-click links of messages."""

from __future__ import annotations

from datetime import datetime
from html import escape
from typing import Any

from flask import Blueprint, Response, current_app
from flask_openapi3.blueprint import APIBlueprint
from flask_openapi3.models.tag import Tag
from pydantic import BaseModel, ConfigDict, Field

from email_service.api.errors import API_KEY, BODY_ERRORS
from email_service.api.schemas import NO_NUL_PATTERN, ErrorBody
from email_service.errors import NotFound
from email_service.services import Services, suppressions
from email_service.storage.models import SuppressionReason

suppressions_tag = Tag(
    name="suppressions",
    description="Addresses never sent to: unsubscribed (one-click links), hard-bounced (a 5xx to RCPT or a bounce "
    "report), soft-bounced SOFT_BOUNCE_LIMIT times, complained of (marked as spam), or added here. Checked "
    "when a job is accepted and again before each batch is sent; such recipients end `suppressed`.",
)
blueprint = APIBlueprint(
    "suppressions", __name__, url_prefix="/api/suppressions", abp_tags=[suppressions_tag], abp_security=API_KEY
)
ERRORS: dict[int | str, Any] = {404: ErrorBody, **BODY_ERRORS}


class SuppressionBody(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {"email": "will@example.com"}})

    email: str = Field(description="The address to suppress.", max_length=320)


class SuppressionPath(BaseModel):
    email: str = Field(description="A suppressed address.", max_length=320, pattern=NO_NUL_PATTERN)


class SuppressionQuery(BaseModel):
    after: str | None = Field(
        None, description="`next_after` of the previous page.", max_length=320, pattern=NO_NUL_PATTERN
    )
    limit: int = Field(100, ge=1, le=1000)


class SuppressionView(BaseModel):
    email: str = Field(description="The address, normalized.")
    reason: str = Field(description="unsubscribed, bounced, soft_bounced, complained or manual.")
    job_id: str | None = Field(description="The job it came from, if any.")
    created_at: datetime


class SuppressionList(BaseModel):
    items: list[SuppressionView]
    next_after: str | None


def _services() -> Services:
    services: Services = current_app.extensions["email_service"]
    return services


@blueprint.get(
    "/", strict_slashes=False, summary="List suppressed addresses", responses={200: SuppressionList, **ERRORS}
)
def list_suppressions(query: SuppressionQuery) -> Any:
    rows = suppressions.page(_services(), after=query.after, limit=query.limit)
    items = [SuppressionView(email=r.email, reason=r.reason, job_id=r.job_id, created_at=r.created_at) for r in rows]
    next_after = rows[-1].email if len(rows) == query.limit else None
    return SuppressionList(items=items, next_after=next_after).model_dump(mode="json")


@blueprint.post(
    "/",
    strict_slashes=False,
    summary="Suppress an address",
    description="201 when added, 200 when it already was (its first reason stays).",
    responses={200: None, 201: None, **ERRORS},
)
def add_suppression(body: SuppressionBody) -> Any:
    added = suppressions.add(_services(), body.email, SuppressionReason.MANUAL)
    return {"email": suppressions.key_of(body.email), "added": added}, 201 if added else 200


@blueprint.delete("/<email>", summary="Send to an address again", responses={204: None, **ERRORS})
def remove_suppression(path: SuppressionPath) -> Any:
    suppressions.remove(_services(), path.email)
    return "", 204


# One-click unsubscribe (RFC 8058): no login, no redirect, the same answer however often it is used.
unsubscribe = Blueprint("unsubscribe", __name__, url_prefix="/unsubscribe")

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title></head>
<body style="font-family:Helvetica,Arial,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;">
<h1 style="font-size:1.4rem;">{title}</h1><p>{text}</p>{form}</body></html>"""


@unsubscribe.get("/<token>")
def confirm(token: str) -> Response:
    """The page a person reaches from the link: a button, since mail scanners follow links by themselves."""
    form = (
        '<form method="post"><button type="submit" style="font-size:1rem;padding:.5rem 1rem;">'
        "Unsubscribe</button></form>"
    )
    return _page(200, "Unsubscribe", "Stop receiving these messages at this address?", form)


@unsubscribe.post("/<token>")
def one_click(token: str) -> Response:
    """What mail clients POST (body `List-Unsubscribe=One-Click`), and what the page's button posts."""
    try:
        address = suppressions.unsubscribe(_services(), token)
    except NotFound:
        return _page(404, "Link not valid", "This unsubscribe link is not valid.", "")
    return _page(200, "Unsubscribed", f"{escape(address)} will receive no more of these messages.", "")


def _page(status: int, title: str, text: str, form: str) -> Response:
    return Response(_PAGE.format(title=title, text=text, form=form), status=status, mimetype="text/html")
