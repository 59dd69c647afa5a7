"""/api/account: the account of the calling key, as the caller may see it (never a secret)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import current_app
from flask_openapi3.blueprint import APIBlueprint
from flask_openapi3.models.tag import Tag
from pydantic import BaseModel, Field

from email_service.api.auth import current_caller
from email_service.api.errors import API_KEY, COMMON_ERRORS
from email_service.services import Services, accounts

account_tag = Tag(
    name="account",
    description="Each calling service is an account: it owns its API keys, jobs, stored templates, suppressions, "
    "allowed senders, default callback URL and webhook signing secret, and no other account can see or change "
    "them (another account's job, template or suppression answers 404). Quotas count per account, whichever of "
    "its keys is used. Operators create accounts and keys with `email-service accounts` and `keys`; a key "
    "with the admin role also manages the shared templates and the shared suppression list.",
)
blueprint = APIBlueprint("account", __name__, url_prefix="/api/account", abp_tags=[account_tag], abp_security=API_KEY)


class AccountView(BaseModel):
    id: str | None = Field(description="The account's id; null when the service runs without API keys.")
    name: str | None = Field(description="The account's name.")
    key: str | None = Field(description="The name of the key this request was made with.")
    role: str = Field(description="`account`, or `admin` for a key that also manages what is shared.")
    senders: list[str] = Field(description="From addresses its jobs may use besides the service's default sender.")
    callback_url: str | None = Field(description="Where the events of its jobs that name no callback_url go.")
    webhook_signing: str = Field(
        description="`own`: its events are signed with its own secret; `shared`: with the service's WEBHOOK_SECRET "
        "(an account from before accounts existed, until the operator rotates its secret)."
    )
    previous_secret_until: datetime | None = Field(
        description="Until when the secret before the last rotation still signs beside the new one."
    )


@blueprint.get(
    "/", strict_slashes=False, summary="The calling key's account", responses={200: AccountView, **COMMON_ERRORS}
)
def get_account() -> Any:
    caller = current_caller()
    services: Services = current_app.extensions["email_service"]
    info = accounts.get(services.readers, caller.account) if caller.account is not None else None
    with services.readers() as session:
        callback_url = accounts.default_callback_url(session, caller.account, services.settings)
    view = AccountView(
        id=info.id if info else None,
        name=info.name if info else None,
        key=caller.key_name,
        role="admin" if caller.admin else "account",
        senders=info.senders if info else [],
        callback_url=callback_url,
        webhook_signing="own" if info and info.own_webhook_secret else "shared",
        previous_secret_until=info.previous_secret_until if info else None,
    )
    return view.model_dump(mode="json")
