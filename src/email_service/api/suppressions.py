"""/api/suppressions: the addresses nothing is sent to; /unsubscribe: the one-click links of messages."""

from __future__ import annotations

from datetime import datetime
from html import escape
from typing import Any

from flask import Blueprint, Response, current_app
from flask_openapi3.blueprint import APIBlueprint
from flask_openapi3.models.tag import Tag
from pydantic import BaseModel, ConfigDict, Field

from email_service.api.auth import current_caller
from email_service.api.errors import API_KEY, BODY_ERRORS
from email_service.api.schemas import NO_NUL_PATTERN, ErrorBody
from email_service.errors import NotFound
from email_service.services import Services, suppressions
from email_service.storage.models import SuppressionReason

suppressions_tag = Tag(
    name="suppressions",
    description="Addresses never sent to. Each account has its own list, and one list is shared by every account. "
    "On the list of the account whose job sent the message: recipients who unsubscribed (one-click links) or "
    "complained (marked it as spam), and the addresses the account adds here. On the shared list: hard bounces "
    "(a 5xx to RCPT or a bounce report) and addresses that soft-bounced SOFT_BOUNCE_LIMIT times, since the mailbox "
    "fails for every sender, and what operators add. A job skips the addresses on its account's list and on the "
    "shared one, when it is accepted and again before each batch; such recipients end `suppressed`, their `error` "
    "saying which list and why (the only way an account sees a shared entry). These endpoints work on the calling "
    "key's account's list; with `?shared=true` on the shared list, which needs a key with the admin role (403 "
    "otherwise). With authentication off there are no accounts: every list is the shared one.",
)
blueprint = APIBlueprint(
    "suppressions", __name__, url_prefix="/api/suppressions", abp_tags=[suppressions_tag], abp_security=API_KEY
)
ERRORS: dict[int | str, Any] = {403: ErrorBody, 404: ErrorBody, **BODY_ERRORS}


class SuppressionBody(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {"email": "will@example.com"}})

    email: str = Field(description="The address to suppress.", max_length=320)


class SuppressionPath(BaseModel):
    email: str = Field(description="A suppressed address.", max_length=320, pattern=NO_NUL_PATTERN)


class ScopeQuery(BaseModel):
    shared: bool = Field(
        False,
        description="true: the shared list, which every account's jobs skip (a key with the admin role only; "
        "403 otherwise); false: the calling key's account's list.",
    )


class SuppressionQuery(ScopeQuery):
    after: str | None = Field(
        None, description="`next_after` of the previous page.", max_length=320, pattern=NO_NUL_PATTERN
    )
    limit: int = Field(100, ge=1, le=1000)


class SuppressionView(BaseModel):
    email: str = Field(description="The address, normalized.")
    reason: str = Field(description="unsubscribed, bounced, soft_bounced, complained or manual.")
    job_id: str | None = Field(description="The job it came from, if any.")
    created_at: datetime
    shared: bool = Field(description="On the shared list (every account's jobs skip it), not the account's own.")


class SuppressionList(BaseModel):
    items: list[SuppressionView]
    next_after: str | None


class SuppressionAdded(BaseModel):
    email: str = Field(description="The address, normalized.")
    added: bool = Field(description="false when it already was on that list (its first reason stays).")
    shared: bool = Field(description="Added to the shared list, not the account's own.")


def _services() -> Services:
    services: Services = current_app.extensions["email_service"]
    return services


def _list_of(query: ScopeQuery) -> str | None:
    return suppressions.list_of(current_caller(), shared=query.shared)


@blueprint.get(
    "/",
    strict_slashes=False,
    summary="List suppressed addresses",
    description="The addresses of the calling key's account's list, or with `shared=true` of the shared list, in "
    "address order.",
    responses={200: SuppressionList, **ERRORS},
)
def list_suppressions(query: SuppressionQuery) -> Any:
    rows = suppressions.page(_services(), account=_list_of(query), after=query.after, limit=query.limit)
    items = [
        SuppressionView(email=r.email, reason=r.reason, job_id=r.job_id, created_at=r.created_at, shared=r.shared)
        for r in rows
    ]
    next_after = rows[-1].email if len(rows) == query.limit else None
    return SuppressionList(items=items, next_after=next_after).model_dump(mode="json")


@blueprint.post(
    "/",
    strict_slashes=False,
    summary="Suppress an address",
    description="On the calling key's account's list (its jobs only skip it), or with `shared=true` on the shared "
    "list (every account's jobs skip it). 201 when added, 200 when it already was on that list (its first reason "
    "stays).",
    responses={200: SuppressionAdded, 201: SuppressionAdded, **ERRORS},
)
def add_suppression(query: ScopeQuery, body: SuppressionBody) -> Any:
    account = _list_of(query)
    added = suppressions.add(_services(), body.email, account=account, reason=SuppressionReason.MANUAL)
    answer = SuppressionAdded(email=suppressions.key_of(body.email), added=added, shared=account is None)
    return answer.model_dump(mode="json"), 201 if added else 200


@blueprint.delete(
    "/<email>",
    summary="Send to an address again",
    description="Takes the address off the calling key's account's list, or with `shared=true` off the shared "
    "list. 404 when it is not on that list: an entry of the shared list is not on an account's list, and what "
    "another account suppressed is its own.",
    responses={204: None, **ERRORS},
)
def remove_suppression(path: SuppressionPath, query: ScopeQuery) -> Any:
    suppressions.remove(_services(), path.email, account=_list_of(query))
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
