"""/dashboard/ through Flask's test client, on SQLite with a real SMTP server: signing in with an API key,
the session cookie, isolation between keys, CSRF refusal on every form, escaping, and each page and action."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select, update

from email_service.api.dashboard.access import SESSION_COOKIE
from email_service.app import create_api
from email_service.config import Settings
from email_service.services import Services, auth, intake, suppressions, templates
from email_service.services.templates import TemplateFields
from email_service.storage import scheduling
from email_service.storage.models import Job, KeyRole, Lane, Suppression, utcnow
from tests.support.inline import Recipient, counts, inline_services, run
from tests.support.queues import RecordingQueue
from tests.support.smtp_sink import REFUSED, SMTPSink

SECRET = "a-dashboard-secret-of-32-characters-or-more"


@pytest.fixture
def services(tmp_path: Path, refusing_sink: SMTPSink) -> Services:
    return inline_services(tmp_path, mail_port=refusing_sink.port, dashboard_secret=SECRET)


@pytest.fixture
def keys(services: Services) -> dict[str, tuple[str, str]]:
    """Two API keys, each of an account of its own: name → (account id, key)."""
    made = {}
    for name in ("alpha", "beta"):
        info, key, _ = auth.create_key(services.sessions, services.settings, name)
        made[name] = (info.account_id, key)
    return made


@pytest.fixture
def client(services: Services) -> FlaskClient:
    return create_api(services).test_client()


def csrf(client: FlaskClient, url: str = "/dashboard/login") -> str:
    """The CSRF token of the client's session, as a page's form carries it."""
    page = client.get(url)
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match, page.text
    return match.group(1)


def sign_in(client: FlaskClient, key: str) -> None:
    answer = client.post("/dashboard/login", data={"api_key": key, "csrf_token": csrf(client)})
    assert answer.status_code == 303, answer.text


def in_an_hour() -> str:
    return (utcnow() + timedelta(hours=1)).isoformat()


def job_of(
    services: Services, account: str | None, recipients: list[Recipient] | None = None, **options: object
) -> str:
    return run(services, recipients or [Recipient("will@example.com")], account=account, **options)


def waiting_job(
    services: Services, account: str, recipients: int, lane: Lane, *, started: bool, served: int | None = None
) -> str:
    """A job that waits in ``lane`` (the services' queue must run nothing): queued, or ``started`` as a worker's
    first claim starts it, at place ``served`` in its lane's round."""
    addresses = [f"r{index}@example.com" for index in range(recipients)]
    job_id = intake.accept_job(
        services, intake.JobRequest(recipients=addresses, subject=f"{lane} job", lane=lane), account=account
    ).id
    now = utcnow()
    with services.sessions.begin() as session:
        if started:
            assert scheduling.start(session, job_id, now)
        if served is not None:
            session.execute(update(Job).where(Job.id == job_id).values(served=served))
    return job_id


def rows_of(page: str, lane: str) -> list[str]:
    """The job ids of a lane's table on the queue page, in their order."""
    table = re.search(rf'<table data-lane-jobs="{lane}">(.*?)</table>', page, re.S)
    return re.findall(r'<tr data-job="([^"]+)"', table.group(1)) if table else []


# Signing in


def test_the_dashboard_is_off_without_a_secret(tmp_path: Path, refusing_sink: SMTPSink):
    off = create_api(inline_services(tmp_path, mail_port=refusing_sink.port, auth_disabled=True)).test_client()
    answer = off.get("/dashboard/jobs")
    assert answer.status_code == 404 and "DASHBOARD_SECRET" in answer.text


def test_every_page_sends_to_the_login_form_until_a_key_is_given(client: FlaskClient, keys):
    for url in ("/dashboard/jobs", "/dashboard/jobs/x", "/dashboard/templates", "/dashboard/suppressions"):
        answer = client.get(url)
        assert answer.status_code == 302
        assert answer.headers["Location"].startswith(f"/dashboard/login?next={url}")
    login = client.get("/dashboard/login")
    assert login.status_code == 200 and 'type="password"' in login.text
    assert "plain HTTP" in login.text  # a Secure cookie would not come back: the page says so
    assert "plain HTTP" not in client.get("/dashboard/login", base_url="https://localhost").text


def test_a_short_secret_is_refused_at_start(tmp_path: Path):
    with pytest.raises(ValueError, match="DASHBOARD_SECRET must have 32 characters"):
        Settings(data_dir=tmp_path, dashboard_secret="too-short")


def test_a_wrong_key_is_refused_and_the_right_one_opens_a_hardened_session(client: FlaskClient, keys):
    token = csrf(client)
    refused = client.post("/dashboard/login", data={"api_key": "es_wrong", "csrf_token": token})
    assert refused.status_code == 401 and "unknown or revoked" in refused.text
    key = keys["alpha"][1]
    answer = client.post("/dashboard/login", data={"api_key": key, "csrf_token": token, "next": "/dashboard/templates"})
    assert answer.status_code == 303 and answer.headers["Location"] == "/dashboard/templates"
    cookie = answer.headers["Set-Cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    assert all(flag in cookie for flag in ("Secure", "HttpOnly", "SameSite=Strict", "Path=/dashboard"))
    assert key not in cookie and key[3:20] not in cookie  # the session keeps the key's digest, not the key
    page = client.get("/dashboard/jobs")
    assert page.status_code == 200 and "Account <strong>alpha</strong>" in page.text


def test_a_new_session_starts_at_login_so_an_earlier_token_is_worth_nothing(client: FlaskClient, keys):
    before = csrf(client)
    sign_in(client, keys["alpha"][1])
    assert csrf(client, "/dashboard/suppressions") != before


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/api/email/", "/dashboard\\..\\x"])
def test_signing_in_never_sends_the_browser_elsewhere(client: FlaskClient, keys, target: str):
    answer = client.post(
        "/dashboard/login", data={"api_key": keys["alpha"][1], "csrf_token": csrf(client), "next": target}
    )
    assert answer.headers["Location"] == "/dashboard/jobs"


def test_a_revoked_key_is_signed_out_at_its_next_page(client: FlaskClient, services: Services, keys):
    sign_in(client, keys["alpha"][1])
    assert client.get("/dashboard/jobs").status_code == 200
    auth.revoke_key(services.sessions, "alpha")
    assert client.get("/dashboard/jobs").status_code == 302


def test_signing_out_ends_the_session(client: FlaskClient, keys):
    sign_in(client, keys["alpha"][1])
    token = csrf(client, "/dashboard/jobs")
    assert client.post("/dashboard/logout", data={"csrf_token": token}).status_code == 303
    assert client.get("/dashboard/jobs").status_code == 302


def test_with_authentication_off_no_key_is_asked(tmp_path: Path, refusing_sink: SMTPSink):
    services = inline_services(tmp_path, mail_port=refusing_sink.port, auth_disabled=True, dashboard_secret=SECRET)
    job_id = job_of(services, None)
    page = create_api(services).test_client().get("/dashboard/jobs")
    assert page.status_code == 200 and "No API key needed" in page.text and job_id in page.text


def test_the_session_lasts_dashboard_session_hours(tmp_path: Path, refusing_sink: SMTPSink, keys):
    services = inline_services(
        tmp_path, mail_port=refusing_sink.port, dashboard_secret=SECRET, dashboard_session_hours=2
    )
    app = create_api(services)
    assert app.permanent_session_lifetime == timedelta(hours=2)


# Isolation between keys


def test_a_key_sees_and_steers_only_its_own_jobs(client: FlaskClient, services: Services, keys):
    mine = job_of(services, keys["alpha"][0], send_at=in_an_hour())
    theirs = job_of(services, keys["beta"][0], send_at=in_an_hour())
    sign_in(client, keys["alpha"][1])
    listing = client.get("/dashboard/jobs").text
    assert mine in listing and theirs not in listing
    assert client.get(f"/dashboard/jobs/{theirs}").status_code == 404
    assert client.get(f"/dashboard/jobs/{theirs}/cancel").status_code == 404
    token = csrf(client, "/dashboard/jobs")
    for action in ("pause", "cancel"):
        assert client.post(f"/dashboard/jobs/{theirs}/{action}", data={"csrf_token": token}).status_code == 404
    assert client.get(f"/dashboard/jobs/{mine}").status_code == 200
    with services.readers() as session:
        assert session.get(Job, theirs).status == "scheduled"  # type: ignore[union-attr]


def test_an_admin_key_sees_and_steers_every_accounts_jobs(client: FlaskClient, services: Services, keys):
    alpha = job_of(services, keys["alpha"][0], send_at=in_an_hour())
    beta = job_of(services, keys["beta"][0], send_at=in_an_hour())
    _, admin_key, _ = auth.create_key(services.sessions, services.settings, "ops", account="alpha", role="admin")
    sign_in(client, admin_key)
    listing = client.get("/dashboard/jobs").text
    assert alpha in listing and beta in listing
    assert "account alpha" in listing and "account beta" in listing
    assert "admin" in listing  # the header says the role
    token = csrf(client, "/dashboard/jobs")
    assert client.post(f"/dashboard/jobs/{beta}/pause", data={"csrf_token": token}).status_code == 303
    with services.readers() as session:
        assert session.get(Job, beta).status == "paused"  # type: ignore[union-attr]


# CSRF


def test_every_form_is_refused_without_the_sessions_token(client: FlaskClient, services: Services, keys):
    job_id = job_of(services, keys["alpha"][0], send_at=in_an_hour())
    sign_in(client, keys["alpha"][1])
    posts = {
        f"/dashboard/jobs/{job_id}/pause": {},
        f"/dashboard/jobs/{job_id}/cancel": {},
        f"/dashboard/jobs/{job_id}/lane": {"lane": "bulk"},
        "/dashboard/suppressions": {"email": "max@example.com"},
        "/dashboard/suppressions/remove": {"email": "max@example.com"},
        "/dashboard/templates/default": {"subject": "s"},
        "/dashboard/logout": {},
        "/dashboard/login": {"api_key": keys["beta"][1]},
    }
    for url, data in posts.items():
        for token in (None, "forged-token"):
            form = data if token is None else {**data, "csrf_token": token}
            answer = client.post(url, data=form)
            assert answer.status_code == 403, url
            assert "not from this session" in answer.text
    assert counts(services, job_id) == {"pending": 1}
    with services.readers() as session:
        job = session.get(Job, job_id)
        assert job is not None and job.status == "scheduled" and job.lane == "transactional"
        assert session.scalars(select(Suppression)).all() == []
    assert "Account <strong>alpha</strong>" in client.get("/dashboard/jobs").text  # still signed in as alpha


# Pages and actions


def test_the_jobs_list_filters_by_status_and_tag(client: FlaskClient, services: Services, keys):
    owner = keys["alpha"][0]
    done = job_of(services, owner, tags=["onboarding"])
    waiting = job_of(services, owner, tags=["digest"], send_at=in_an_hour())
    sign_in(client, keys["alpha"][1])
    assert done in (page := client.get("/dashboard/jobs?status=completed").text) and waiting not in page
    assert waiting in (page := client.get("/dashboard/jobs?tag=digest").text) and done not in page
    assert "No job matches" in client.get("/dashboard/jobs?tag=onboard").text  # a tag, not a part of one
    bad = client.get("/dashboard/jobs?status=lost")
    assert bad.status_code == 422 and "status" in bad.text
    assert 'hx-trigger="every 2s"' in client.get("/dashboard/jobs").text  # a job is unfinished: the list polls


def test_a_job_page_shows_counts_chart_failures_and_filters_its_recipients(
    client: FlaskClient, services: Services, keys
):
    recipients = [Recipient("will@example.com"), Recipient(REFUSED), Recipient("eleven@example.com")]
    job_id = job_of(services, keys["alpha"][0], recipients, tags=["t"], metadata={"campaign": "winter"})
    sign_in(client, keys["alpha"][1])
    page = client.get(f"/dashboard/jobs/{job_id}").text
    assert 'data-count="sent">2<' in page and 'data-count="failed">1<' in page
    assert "100 %" in page and "hx-trigger" not in page  # finished: nothing polls
    summary = client.get(f"/dashboard/jobs/{job_id}/summary").text  # the part a sending job's page refreshes
    assert (
        summary.lstrip().startswith('<div id="job-live"') and 'data-count="failed">1<' in summary and "<svg" in summary
    )
    part = client.get(f"/dashboard/jobs/{job_id}/recipients?status=failed").text
    assert part.lstrip().startswith('<div id="recipients-live"') and REFUSED in part and "will@example.com" not in part
    assert "<svg" in page and "2 messages sent" in page
    assert "550" in page and "No such user here" in page
    assert '"campaign": "winter"' in page
    failed = client.get(f"/dashboard/jobs/{job_id}?status=failed").text
    assert REFUSED in failed and "will@example.com" not in failed
    found = client.get(f"/dashboard/jobs/{job_id}?q=ELEVEN").text
    assert "eleven@example.com" in found and "will@example.com" not in found
    assert client.get(f"/dashboard/jobs/{job_id}?after=x").status_code == 422


def test_pause_resume_and_cancel_go_through_a_confirmation(client: FlaskClient, services: Services, keys):
    job_id = job_of(services, keys["alpha"][0], send_at=in_an_hour())
    sign_in(client, keys["alpha"][1])
    page = client.get(f"/dashboard/jobs/{job_id}").text  # unfinished: both parts refresh themselves
    assert f'hx-get="/dashboard/jobs/{job_id}/summary" hx-trigger="every 1s"' in page
    assert f'hx-get="/dashboard/jobs/{job_id}/recipients" hx-trigger="every 2s"' in page
    confirm = client.get(f"/dashboard/jobs/{job_id}/pause")
    assert confirm.status_code == 200 and "Pause this job?" in confirm.text and "Yes, pause" in confirm.text
    token = csrf(client, f"/dashboard/jobs/{job_id}/pause")
    for action, status in (("pause", "paused"), ("resume", "scheduled"), ("cancel", "cancelled")):
        answer = client.post(f"/dashboard/jobs/{job_id}/{action}", data={"csrf_token": token})
        assert answer.status_code == 303 and answer.headers["Location"] == f"/dashboard/jobs/{job_id}"
        page = client.get(f"/dashboard/jobs/{job_id}").text
        assert (
            f'tone-{"held" if status == "paused" else "waiting" if status == "scheduled" else "muted"}">{status}'
            in page
        )
        assert "done." in page
    again = client.post(f"/dashboard/jobs/{job_id}/pause", data={"csrf_token": token})
    assert "only a scheduled, queued or sending job can be paused" in client.get(again.headers["Location"]).text


def test_retry_sends_again_to_the_failed(client: FlaskClient, services: Services, keys, refusing_sink: SMTPSink):
    refusing_sink.handler.data_reply = "554 5.7.1 Message refused by policy"  # a failure, not a bounce
    job_id = job_of(services, keys["alpha"][0], [Recipient("will@example.com"), Recipient("eleven@example.com")])
    assert counts(services, job_id) == {"failed": 2}
    sign_in(client, keys["alpha"][1])
    assert "Retry the failed" in client.get(f"/dashboard/jobs/{job_id}").text
    refusing_sink.handler.data_reply = "250 OK"  # the relay takes them now
    token = csrf(client, f"/dashboard/jobs/{job_id}/retry")
    assert client.post(f"/dashboard/jobs/{job_id}/retry", data={"csrf_token": token}).status_code == 303
    assert counts(services, job_id) == {"sent": 2}
    page = client.get(f"/dashboard/jobs/{job_id}").text
    assert "Retry the failed: done." in page and f'href="/dashboard/jobs/{job_id}/retry"' not in page


def test_addresses_and_subjects_are_shown_as_text(client: FlaskClient, services: Services, keys):
    subject = "<script>alert('subject')</script>"
    name = '<img src=x onerror="alert(1)">'
    recipients = [Recipient("will@example.com", name=name)]
    job_id = job_of(services, keys["alpha"][0], recipients, subject=subject, tags=["<b>tag</b>"])
    sign_in(client, keys["alpha"][1])
    for url in ("/dashboard/jobs", f"/dashboard/jobs/{job_id}", f"/dashboard/jobs/{job_id}/cancel"):
        page = client.get(url).text
        assert "<script>alert" not in page and "&lt;script&gt;alert(" in page, url
        assert "<b>tag</b>" not in page
    page = client.get(f"/dashboard/jobs/{job_id}").text
    assert "<img src=x" not in page and "&lt;img src=x" in page


def test_pages_carry_a_content_security_policy_and_are_not_cached(client: FlaskClient, keys):
    sign_in(client, keys["alpha"][1])
    answer = client.get("/dashboard/jobs")
    assert "script-src 'self'" in answer.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"]
    assert answer.headers["Cache-Control"] == "no-store"
    assert client.get("/dashboard/static/htmx-2.0.11.min.js").status_code == 200


def test_templates_are_listed_with_versions_and_previewed_with_the_variables_typed(
    client: FlaskClient, services: Services, keys
):
    alpha = keys["alpha"][0]
    templates.create(
        services,
        "welcome",
        TemplateFields(subject="Hi {{ name }}", html="<p>Hi {{ name }}, {{ code }}</p>"),
        scope=alpha,
    )
    templates.update(
        services, "welcome", TemplateFields(subject="Hello {{ name }}", html="<p>v2 {{ name }}</p>"), scope=alpha
    )
    sign_in(client, keys["alpha"][1])
    listing = client.get("/dashboard/templates").text
    assert "welcome" in listing and "default" in listing
    page = client.get("/dashboard/templates/welcome").text
    assert 'value="1"' in page and 'value="2"' in page
    token = csrf(client, "/dashboard/templates/welcome")
    form = {"csrf_token": token, "version": "1", "subject": "s", "content": "", "email": "p@example.com", "name": ""}
    preview = client.post("/dashboard/templates/welcome", data={**form, "variables": '{"name": "<Zoé>", "code": "42"}'})
    assert preview.status_code == 200
    assert "Hi &lt;Zoé&gt;" in preview.text  # the subject, escaped
    # The HTML part goes in a sandboxed iframe's srcdoc, escaped once more as an attribute.
    frame = re.search(r'<iframe class="html-part"[^>]* sandbox srcdoc="([^"]*)"', preview.text)
    assert frame and "&lt;p&gt;Hi &amp;lt;Zoé&amp;gt;, 42&lt;/p&gt;" in frame.group(1)
    for version in ("x", "9" * 30):  # not one, or beyond the column's integers
        wrong = client.post("/dashboard/templates/welcome", data={**form, "version": version, "variables": "{}"})
        assert wrong.status_code == 422 and "a version number" in wrong.text
    bad = client.post("/dashboard/templates/welcome", data={**form, "variables": "{not json"})
    assert bad.status_code == 422 and "variables" in bad.text and "not JSON" in bad.text
    undefined = client.post("/dashboard/templates/welcome", data={**form, "variables": "{}"})
    assert undefined.status_code == 422 and "code" in undefined.text


def test_templates_pages_show_the_accounts_own_the_shared_ones_and_the_files_never_anothers(
    client: FlaskClient, services: Services, keys
):
    alpha, beta = keys["alpha"][0], keys["beta"][0]
    templates.create(services, "promo", TemplateFields(text="shared promo"), scope=None)
    templates.create(services, "letter", TemplateFields(text="beta's letter"), scope=beta)
    templates.create(services, "own-news", TemplateFields(text="alpha's news"), scope=alpha)
    sign_in(client, keys["alpha"][1])
    rows = {
        name: kind
        for name, kind in re.findall(
            r'<td><a href="/dashboard/templates/([^"]+)">[^<]*</a></td>\s*<td>([^<]*)</td>',
            client.get("/dashboard/templates").text,
        )
    }
    assert rows == {"own-news": "own", "promo": "shared", "default": "file"}
    assert "shared, version 1" in client.get("/dashboard/templates/promo").text
    assert "own, version 1" in client.get("/dashboard/templates/own-news").text
    hidden = client.get("/dashboard/templates/letter")
    unknown = client.get("/dashboard/templates/nothing")
    assert hidden.status_code == unknown.status_code == 404
    assert hidden.text.replace("letter", "nothing") == unknown.text, "nothing tells it exists"
    token = csrf(client, "/dashboard/templates/promo")
    form = {"csrf_token": token, "version": "1", "subject": "s", "content": "", "email": "p@example.com", "name": ""}
    assert client.post("/dashboard/templates/letter", data={**form, "variables": "{}"}).status_code == 404


def test_suppressions_are_added_searched_and_removed(client: FlaskClient, services: Services, keys):
    sign_in(client, keys["alpha"][1])
    token = csrf(client, "/dashboard/suppressions")
    added = client.post("/dashboard/suppressions", data={"csrf_token": token, "email": "Max@Example.com"})
    assert added.status_code == 303
    assert "Max@Example.com is suppressed." in client.get(added.headers["Location"]).text
    client.post(
        "/dashboard/suppressions", data={"csrf_token": token, "email": "lucas@example.com"}, follow_redirects=True
    )
    found = client.get("/dashboard/suppressions?q=max").text
    assert "max@example.com" in found and "lucas@example.com" not in found
    invalid = client.post("/dashboard/suppressions", data={"csrf_token": token, "email": "not an address"})
    assert "was not added" in client.get(invalid.headers["Location"]).text
    client.post("/dashboard/suppressions/remove", data={"csrf_token": token, "email": "max@example.com"})
    page = client.get("/dashboard/suppressions").text
    assert "no longer suppressed" in page and "lucas@example.com" in page
    assert ">max@example.com<" not in page
    # A later job skips what the page suppressed.
    job_id = job_of(services, keys["alpha"][0], [Recipient("lucas@example.com")])
    assert counts(services, job_id) == {"suppressed": 1}


def test_a_key_sees_and_removes_only_its_accounts_suppressions(client: FlaskClient, services: Services, keys):
    suppressions.add(services, REFUSED, account=keys["alpha"][0])
    sign_in(client, keys["beta"][1])
    page = client.get("/dashboard/suppressions").text
    assert "account beta" in page and REFUSED not in page
    token = csrf(client, "/dashboard/suppressions")
    removed = client.post("/dashboard/suppressions/remove", data={"csrf_token": token, "email": REFUSED})
    assert "is not on this suppression list" in client.get(removed.headers["Location"]).text
    with services.readers() as session:
        assert [(s.account_id, s.address) for s in session.scalars(select(Suppression))] == [
            (keys["alpha"][0], REFUSED)
        ]
    assert client.get("/dashboard/suppressions?scope=shared").status_code == 403
    refused = client.post("/dashboard/suppressions", data={"csrf_token": token, "email": REFUSED, "scope": "shared"})
    assert refused.status_code == 403 and "admin role" in refused.text
    assert client.get("/dashboard/suppressions?scope=everyone").status_code == 422


def test_an_operator_manages_the_shared_list_beside_its_accounts(client: FlaskClient, services: Services, keys):
    _, key, _ = auth.create_key(services.sessions, services.settings, "ops", role=KeyRole.ADMIN)
    job_of(services, keys["alpha"][0], [Recipient(REFUSED)])  # refused at RCPT: on the shared list
    sign_in(client, key)
    own = client.get("/dashboard/suppressions").text
    assert REFUSED not in own and "The shared list" in own
    shared = client.get("/dashboard/suppressions?scope=shared").text
    assert "shared list" in shared and REFUSED in shared and "bounced" in shared
    assert 'name="scope" value="shared"' in shared, "its forms stay on the shared list"
    token = csrf(client, "/dashboard/suppressions?scope=shared")
    added = client.post(
        "/dashboard/suppressions", data={"csrf_token": token, "email": "max@example.com", "scope": "shared"}
    )
    assert added.headers["Location"].endswith("/dashboard/suppressions?scope=shared")
    client.post("/dashboard/suppressions/remove", data={"csrf_token": token, "email": REFUSED, "scope": "shared"})
    with services.readers() as session:
        assert [(s.account_id, s.address) for s in session.scalars(select(Suppression))] == [(None, "max@example.com")]
    assert counts(services, job_of(services, keys["beta"][0], [Recipient("max@example.com")])) == {"suppressed": 1}


def test_a_nul_character_in_a_form_is_refused(client: FlaskClient, keys):
    sign_in(client, keys["alpha"][1])
    token = csrf(client, "/dashboard/suppressions")
    answer = client.post("/dashboard/suppressions", data={"csrf_token": token, "email": "a\x00@example.com"})
    assert answer.status_code == 422 and "NUL" in answer.text


# Lanes and the queue


def test_a_job_shows_its_lane_and_where_it_stands_and_moves_to_the_other_lane(
    client: FlaskClient, services: Services, keys
):
    alpha = keys["alpha"][0]
    finished = job_of(services, alpha)
    services.queue = RecordingQueue()  # no worker from now on: the jobs wait
    urgent = waiting_job(services, alpha, 2, Lane.TRANSACTIONAL, started=True)
    news = waiting_job(services, alpha, 3, Lane.BULK, started=True)
    sign_in(client, keys["alpha"][1])
    listing = client.get("/dashboard/jobs").text
    assert re.search(rf'data-job="{news}">.*?data-lane="bulk">bulk<', listing, re.S)
    page = client.get(f"/dashboard/jobs/{news}").text
    assert 'data-lane="bulk">bulk<' in page
    assert "data-waiting>3<" in page and "data-ahead>2<" in page  # behind the transactional job's 2 due
    assert "no estimate without <code>SEND_RATE</code>" in page
    assert "data-share>100 %<" in client.get(f"/dashboard/jobs/{urgent}/summary").text

    token = csrf(client, f"/dashboard/jobs/{news}")
    assert 'name="lane" value="transactional"' in client.get(f"/dashboard/jobs/{news}").text
    moved = client.post(f"/dashboard/jobs/{news}/lane", data={"csrf_token": token, "lane": "transactional"})
    assert moved.status_code == 303 and moved.headers["Location"] == f"/dashboard/jobs/{news}"
    page = client.get(f"/dashboard/jobs/{news}").text
    assert "Moved to the transactional lane" in page and 'data-lane="transactional"' in page
    assert "data-share>50 %<" in page  # its account's two transactional jobs share the lane
    assert client.post(f"/dashboard/jobs/{news}/lane", data={"csrf_token": token, "lane": "fast"}).status_code == 422

    refused = client.post(f"/dashboard/jobs/{finished}/lane", data={"csrf_token": token, "lane": "bulk"})
    assert "a finished job has no lane to change" in client.get(refused.headers["Location"]).text
    theirs = waiting_job(services, keys["beta"][0], 1, Lane.BULK, started=False)
    hidden = client.post(f"/dashboard/jobs/{theirs}/lane", data={"csrf_token": token, "lane": "transactional"})
    assert hidden.status_code == 404  # another account's job, as for the other controls
    with services.readers() as session:
        assert session.get(Job, theirs).lane == "bulk"  # type: ignore[union-attr]
        assert session.get(Job, finished).lane == "transactional"  # type: ignore[union-attr]


def test_the_queue_lists_the_jobs_in_serving_order_and_an_account_sees_only_its_own(
    client: FlaskClient, services: Services, keys
):
    services.queue = RecordingQueue()  # no worker: the jobs wait
    alpha, beta = keys["alpha"][0], keys["beta"][0]
    urgent = waiting_job(services, alpha, 2, Lane.TRANSACTIONAL, started=True)
    alpha_news = waiting_job(services, alpha, 3, Lane.BULK, started=True, served=300)
    beta_news = waiting_job(services, beta, 3, Lane.BULK, started=True, served=100)
    alpha_new = waiting_job(services, alpha, 4, Lane.BULK, started=False)  # queued: starts at its turn
    _, admin_key, _ = auth.create_key(services.sessions, services.settings, "ops", account="alpha", role="admin")
    sign_in(client, admin_key)
    page = client.get("/dashboard/queue").text
    assert 'aria-current="page">Queue<' in page
    assert rows_of(page, "transactional") == [urgent]
    # Beta is behind in the round, then alpha's turn: its job never served first.
    assert rows_of(page, "bulk") == [beta_news, alpha_new, alpha_news]
    assert 'data-due="transactional">2<' in page and 'data-due="bulk">6<' in page  # a queued job has none due
    assert 'data-to-send="bulk">10<' in page  # the queued job's 4 included
    assert "<td>beta</td>" in page and "<td>alpha</td>" in page
    assert re.search(rf'data-job="{urgent}">.*?100 %</td>', page, re.S)
    assert re.search(rf'data-job="{beta_news}">.*?>waits</td>\s*<td class="num">3</td>', page, re.S)

    pages = {}
    for name in ("alpha", "beta"):  # account keys: their own jobs only
        account_client = create_api(services).test_client()
        sign_in(account_client, keys[name][1])
        pages[name] = account_client.get("/dashboard/queue").text
    assert rows_of(pages["alpha"], "bulk") == [alpha_new, alpha_news] and beta_news not in pages["alpha"]
    assert 'data-to-send="bulk">10<' in pages["alpha"]  # the lane's totals count every account's work
    assert "<td>alpha</td>" not in pages["alpha"]
    assert rows_of(pages["beta"], "transactional") == [] and rows_of(pages["beta"], "bulk") == [beta_news]
    assert "No job of yours has work due in this lane." in pages["beta"]
