"""The dashboard's blueprint and what every page shares: the services, the viewer, rendering."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Blueprint, current_app, g, render_template

from email_service.services import Services
from email_service.services.auth import Caller

blueprint = Blueprint(
    "dashboard",
    __name__,
    url_prefix="/dashboard",
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)


@dataclass(frozen=True)
class Viewer:
    """Who is looking: a key of an account (its account's things only), a key with the admin role (every
    account's jobs too), or anyone when authentication is off (everything)."""

    caller: Caller

    @property
    def jobs_of(self) -> str | None:
        """The account whose jobs the pages show; None for every account's."""
        return None if self.caller.admin else self.caller.account

    @property
    def sees_other_accounts(self) -> bool:
        """An operator's key: the pages say whose each job is (with authentication off, nobody's)."""
        return self.jobs_of is None and self.caller.account is not None


def services() -> Services:
    found: Services = current_app.extensions["email_service"]
    return found


def viewer() -> Viewer:
    found: Viewer = g.viewer
    return found


def render(template: str, http_status: int = 200, /, **context: Any) -> tuple[str, int]:
    """A page of templates/dashboard/ and its status code."""
    return render_template(f"dashboard/{template}", **context), http_status
