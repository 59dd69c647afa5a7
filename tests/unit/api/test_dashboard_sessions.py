"""Dashboard sessions end on the server: after logging out, revoking the key or expiring, a copy of the old
cookie opens no page of any kind (it is sent back to the login page) and changes nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select, update

from email_service.app import create_api
from email_service.services import Services, accounts, auth
from email_service.storage.models import DashboardSession, Job, utcnow
from tests.support.inline import inline_services
from tests.support.smtp_sink import SMTPSink
from tests.unit.api.test_dashboard import SECRET, csrf, in_an_hour, job_of, sign_in

COOKIE = "email_service_dashboard"


@pytest.fixture
def relay() -> Iterator[SMTPSink]:
    server = SMTPSink().start()
    yield server
    server.stop()


@pytest.fixture
def services(tmp_path: Path, relay: SMTPSink) -> Services:
    return inline_services(tmp_path, mail_port=relay.port, dashboard_secret=SECRET)


@pytest.fixture
def client(services: Services) -> FlaskClient:
    return create_api(services).test_client()


@pytest.fixture
def keys(services: Services) -> dict[str, tuple[str, str]]:
    """Key name → (its account's id, key): each key of an account of its own."""
    made = {}
    for name in ("alpha", "beta"):
        info, key, _ = auth.create_key(services.sessions, services.settings, name)
        made[name] = (info.account_id, key)
    return made


def _copy(client: FlaskClient) -> FlaskClient:
    """Another browser holding a copy of ``client``'s session cookie."""
    cookie = client.get_cookie(COOKIE, path="/dashboard")
    assert cookie is not None
    copy = client.application.test_client()
    copy.set_cookie(COOKIE, cookie.value, path="/dashboard")
    return copy


def _every_page_kind(job_id: str, token: str) -> list[tuple[str, str, dict[str, str]]]:
    form = {"csrf_token": token}
    preview = {**form, "version": "", "subject": "s", "content": "", "email": "p@example.com", "name": ""}
    return [
        ("GET", "/dashboard/", {}),
        ("GET", "/dashboard/jobs", {}),
        ("GET", f"/dashboard/jobs/{job_id}", {}),
        ("GET", f"/dashboard/jobs/{job_id}/summary", {}),
        ("GET", f"/dashboard/jobs/{job_id}/recipients", {}),
        ("GET", f"/dashboard/jobs/{job_id}/cancel", {}),
        ("GET", "/dashboard/queue", {}),
        ("POST", f"/dashboard/jobs/{job_id}/cancel", form),
        ("POST", f"/dashboard/jobs/{job_id}/lane", {**form, "lane": "bulk"}),
        ("GET", "/dashboard/suppressions", {}),
        ("POST", "/dashboard/suppressions", {**form, "email": "max@example.com"}),
        ("GET", "/dashboard/templates", {}),
        ("GET", "/dashboard/templates/default", {}),
        ("POST", "/dashboard/templates/default", {**preview, "variables": "{}"}),
    ]


def _end_by_logout(client: FlaskClient, services: Services, token: str) -> None:
    assert client.post("/dashboard/logout", data={"csrf_token": token}).status_code == 303


def _end_by_revoking(client: FlaskClient, services: Services, token: str) -> None:
    auth.revoke_key(services.sessions, "alpha")


def _end_by_disabling(client: FlaskClient, services: Services, token: str) -> None:
    accounts.set_disabled(services.sessions, "alpha", True)


def _end_by_expiry(client: FlaskClient, services: Services, token: str) -> None:
    with services.sessions.begin() as session:
        session.execute(update(DashboardSession).values(expires_at=utcnow() - timedelta(seconds=1)))


ENDINGS: dict[str, Callable[[FlaskClient, Services, str], None]] = {
    "logout": _end_by_logout,
    "revoked key": _end_by_revoking,
    "disabled account": _end_by_disabling,
    "expired": _end_by_expiry,
}


@pytest.mark.parametrize("ending", list(ENDINGS))
def test_a_copy_of_the_cookie_opens_nothing_once_the_session_ended(
    client: FlaskClient, services: Services, keys, ending: str
):
    job_id = job_of(services, keys["alpha"][0], send_at=in_an_hour())
    sign_in(client, keys["alpha"][1])
    token = csrf(client, "/dashboard/jobs")
    copy = _copy(client)
    pages = _every_page_kind(job_id, token)
    for method, url, data in pages[:7]:  # the pages that change nothing open with the copy while the session lasts
        answer = copy.open(url, method=method, data=data)
        assert answer.status_code in (200, 302) and "login" not in answer.headers.get("Location", ""), url
    ENDINGS[ending](client, services, token)
    for method, url, data in pages:
        answer = copy.open(url, method=method, data=data)
        assert answer.status_code == 302, (method, url, answer.status_code)
        assert answer.headers["Location"].startswith("/dashboard/login"), (method, url)
    with services.readers() as session:
        job = session.get(Job, job_id)
        assert job is not None and (job.status, job.lane) == ("scheduled", "transactional")
        ended = session.scalars(select(DashboardSession.ended_at)).all()
    assert len(ended) == 1 and (ended[0] is None) == (ending == "expired")  # ended on the server, not only forgotten


def test_logging_out_ends_only_that_session(client: FlaskClient, services: Services, keys):
    sign_in(client, keys["alpha"][1])
    other = client.application.test_client()
    sign_in(other, keys["alpha"][1])
    _end_by_logout(client, services, csrf(client, "/dashboard/jobs"))
    assert client.get("/dashboard/jobs").status_code == 302
    assert other.get("/dashboard/jobs").status_code == 200


def test_the_cookie_carries_a_random_session_id_not_the_key_or_its_digest(client: FlaskClient, services: Services):
    info, key, _ = auth.create_key(services.sessions, services.settings, "gamma")
    sign_in(client, key)
    cookie = client.get_cookie(COOKIE, path="/dashboard")
    assert cookie is not None
    session = client.application.session_interface.get_signing_serializer(client.application).loads(cookie.value)
    assert set(session) >= {"sid"} and "key" not in session
    assert session["sid"] not in (key, auth.hash_key(key)) and len(session["sid"]) >= 43
    with services.readers() as db:
        stored = db.scalars(select(DashboardSession)).all()
    assert [(s.id_hash, s.key_id) for s in stored] == [(auth.hash_key(session["sid"]), info.id)]
