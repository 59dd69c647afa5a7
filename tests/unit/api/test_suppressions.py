"""/api/suppressions and the unsubscribe links through Flask's test client, on SQLite with a real SMTP server:
each account has its own list and one is shared; an account sees and changes only its own list, operators the
shared one (the other causes of an entry: tests/unit/services/test_suppression_scopes.py; end to end through a
worker: tests/integration/api/test_suppressions.py)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from email_service.app import create_api
from email_service.services import Services, auth
from email_service.storage import jobs
from email_service.storage.models import KeyRole
from tests.support.inline import Recipient, counts, inline_services, run
from tests.support.smtp_sink import SMTPSink

PUBLIC_URL = "https://mail.example.test"
ADDRESS = "will@example.com"
ON_OWN_LIST = "suppressed: on this account's suppression list ({})"
ON_SHARED_LIST = "suppressed: on the shared suppression list ({})"


@pytest.fixture
def services(tmp_path: Path, sink: SMTPSink) -> Services:
    return inline_services(tmp_path, mail_port=sink.port, public_url=PUBLIC_URL)


@pytest.fixture
def accounts(services: Services) -> dict[str, tuple[str, str]]:
    """Keys of three accounts, each its own: alpha and beta, and ops with the admin role. Name → (account id, key)."""
    made = {}
    for name, role in (("alpha", KeyRole.ACCOUNT), ("beta", KeyRole.ACCOUNT), ("ops", KeyRole.ADMIN)):
        info, key, _ = auth.create_key(services.sessions, services.settings, name, role=role)
        made[name] = (info.account_id, key)
    return made


@pytest.fixture
def client(services: Services) -> FlaskClient:
    return create_api(services).test_client()


class As:
    """The API as one account's key calls it."""

    def __init__(self, client: FlaskClient, key: str | None) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}

    def call(self, method: str, path: str, **kwargs: Any) -> TestResponse:
        return self.client.open(path, method=method, headers=self.headers, **kwargs)

    def listed(self, **query: str) -> dict[str, dict[str, Any]]:
        answer = self.call("GET", "/api/suppressions", query_string={"limit": "1000", **query})
        assert answer.status_code == 200, answer.text
        return {item["email"]: item for item in answer.get_json()["items"]}

    def add(self, email: str, **query: str) -> TestResponse:
        return self.call("POST", "/api/suppressions", json={"email": email}, query_string=query)

    def remove(self, email: str, **query: str) -> TestResponse:
        return self.call("DELETE", f"/api/suppressions/{email}", query_string=query)


def _as(client: FlaskClient, accounts: dict[str, tuple[str, str]], name: str) -> As:
    return As(client, accounts[name][1])


def _send(services: Services, account: str | None, email: str = ADDRESS) -> tuple[str, dict[str, int], str | None]:
    """Send a job of ``account`` to ``email``: its id, its counts and its recipient's last_error."""
    job_id = run(services, [Recipient(email)], account=account)
    with services.readers() as session:
        [recipient] = jobs.list_recipients(session, job_id, status=None, after=None, limit=10)
    return job_id, counts(services, job_id), recipient.last_error


def _link_path(sink: SMTPSink, email: str) -> str:
    """The path of the unsubscribe link of the latest message to ``email``."""
    message = [m.message for m in sink.handler.messages() if m.recipients == [email]][-1]
    match = re.fullmatch(rf"<{re.escape(PUBLIC_URL)}(/unsubscribe/[^>]+)>", message["List-Unsubscribe"])
    assert match, message["List-Unsubscribe"]
    return match.group(1)


@pytest.mark.parametrize(
    "body",
    [{"data": "List-Unsubscribe=One-Click", "content_type": "application/x-www-form-urlencoded"}, {}],
    ids=["one-click", "the-page-button"],
)
def test_an_unsubscribe_suppresses_for_the_account_of_the_job_only(
    client: FlaskClient, services: Services, sink: SMTPSink, accounts, body: dict[str, str]
):
    alpha, beta = _as(client, accounts, "alpha"), _as(client, accounts, "beta")
    first, _, _ = _send(services, accounts["alpha"][0])
    answer = client.post(_link_path(sink, ADDRESS), **body)
    assert answer.status_code == 200 and ADDRESS in answer.text
    entry = alpha.listed()[ADDRESS]
    assert (entry["reason"], entry["job_id"], entry["shared"]) == ("unsubscribed", first, False)
    assert beta.listed() == {} and _as(client, accounts, "ops").listed(shared="true") == {}

    assert _send(services, accounts["alpha"][0])[1:] == ({"suppressed": 1}, ON_OWN_LIST.format("unsubscribed"))
    assert _send(services, accounts["beta"][0])[1] == {"sent": 1}, "another account's recipient is sent to"


def test_an_unsubscribe_from_a_job_of_no_account_is_shared(
    client: FlaskClient, services: Services, sink: SMTPSink, accounts
):
    _send(services, None)  # a job made before there were accounts
    assert client.post(_link_path(sink, ADDRESS)).status_code == 200
    assert _as(client, accounts, "ops").listed(shared="true")[ADDRESS]["reason"] == "unsubscribed"
    assert _send(services, accounts["beta"][0])[1:] == ({"suppressed": 1}, ON_SHARED_LIST.format("unsubscribed"))


def test_an_accounts_entries_are_invisible_to_other_accounts(client: FlaskClient, services: Services, accounts):
    alpha, beta, ops = (_as(client, accounts, name) for name in ("alpha", "beta", "ops"))
    added = alpha.add("Will@Example.COM")
    assert added.status_code == 201 and added.get_json() == {"email": ADDRESS, "added": True, "shared": False}
    assert alpha.add(ADDRESS).get_json() == {"email": ADDRESS, "added": False, "shared": False}
    assert alpha.listed()[ADDRESS]["reason"] == "manual"
    assert beta.listed() == {} and ops.listed() == {} and ops.listed(shared="true") == {}
    gone = beta.remove(ADDRESS)
    assert gone.status_code == 404 and gone.get_json()["error"] == "not_found"
    assert ADDRESS in alpha.listed(), "another account's DELETE changes nothing"

    assert _send(services, accounts["alpha"][0])[1:] == ({"suppressed": 1}, ON_OWN_LIST.format("manual"))
    assert _send(services, accounts["beta"][0])[1] == {"sent": 1}

    assert beta.add(ADDRESS).status_code == 201, "an entry of its own beside alpha's"
    assert alpha.remove(ADDRESS).status_code == 204
    assert alpha.remove(ADDRESS).status_code == 404
    assert alpha.listed() == {} and ADDRESS in beta.listed()
    assert _send(services, accounts["alpha"][0])[1] == {"sent": 1}
    assert _send(services, accounts["beta"][0])[1] == {"suppressed": 1}


def test_operators_manage_the_shared_list_which_accounts_see_only_in_the_reason(
    client: FlaskClient, services: Services, accounts
):
    alpha, ops = _as(client, accounts, "alpha"), _as(client, accounts, "ops")
    added = ops.add(ADDRESS, shared="true")
    assert added.status_code == 201 and added.get_json()["shared"] is True
    assert ops.listed(shared="true")[ADDRESS] | {"created_at": None} == {
        "email": ADDRESS,
        "reason": "manual",
        "job_id": None,
        "created_at": None,
        "shared": True,
    }
    assert ops.listed() == {}, "an admin key's own list is its account's"
    assert alpha.listed() == {}
    assert alpha.remove(ADDRESS).status_code == 404, "not on alpha's list"
    for account in ("alpha", "beta", "ops"):
        assert _send(services, accounts[account][0])[1:] == ({"suppressed": 1}, ON_SHARED_LIST.format("manual"))

    assert ops.remove(ADDRESS).status_code == 404, "without shared=true: the admin's account's list"
    assert ops.remove(ADDRESS, shared="true").status_code == 204
    assert ops.listed(shared="true") == {}
    assert _send(services, accounts["alpha"][0])[1] == {"sent": 1}


def test_an_admin_keys_own_entries_are_its_accounts(client: FlaskClient, services: Services, accounts):
    ops = _as(client, accounts, "ops")
    assert ops.add(ADDRESS).get_json()["shared"] is False
    assert ops.listed()[ADDRESS]["shared"] is False and ops.listed(shared="true") == {}
    assert _send(services, accounts["ops"][0])[1] == {"suppressed": 1}
    assert _send(services, accounts["alpha"][0])[1] == {"sent": 1}


def test_the_shared_list_is_forbidden_to_other_keys(client: FlaskClient, services: Services, accounts):
    alpha, ops = _as(client, accounts, "alpha"), _as(client, accounts, "ops")
    ops.add(ADDRESS, shared="true")
    for answer in (
        alpha.call("GET", "/api/suppressions", query_string={"shared": "true"}),
        alpha.add("dustin@example.com", shared="true"),
        alpha.remove(ADDRESS, shared="true"),
    ):
        assert answer.status_code == 403
        assert answer.get_json()["error"] == "forbidden" and "admin role" in answer.get_json()["message"]
    assert list(ops.listed(shared="true")) == [ADDRESS], "nothing added, nothing removed"
    assert alpha.listed() == {}


def test_a_bad_scope_is_refused_naming_the_field(client: FlaskClient, accounts):
    answer = _as(client, accounts, "ops").call("GET", "/api/suppressions", query_string={"shared": "maybe"})
    assert answer.status_code == 422 and answer.get_json()["details"][0]["field"] == "shared"


def test_with_authentication_off_every_list_is_the_shared_one(tmp_path: Path, sink: SMTPSink):
    services = inline_services(tmp_path, mail_port=sink.port, auth_disabled=True)
    anyone = As(create_api(services).test_client(), None)
    assert anyone.add(ADDRESS).get_json() == {"email": ADDRESS, "added": True, "shared": True}
    assert anyone.listed() == anyone.listed(shared="true")
    assert anyone.listed()[ADDRESS]["shared"] is True
    assert _send(services, None)[1:] == ({"suppressed": 1}, ON_SHARED_LIST.format("manual"))
    assert anyone.remove(ADDRESS, shared="true").status_code == 204
    assert anyone.listed() == {}
