"""The Python client against the real service: the HTTP API, a Celery worker process on Redis,
PostgreSQL, and an aiosmtpd relay whose received messages are checked."""

from __future__ import annotations

import base64
import contextlib
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from email_service.client import (
    ApiError,
    ClientError,
    ConnectionFailed,
    EmailServiceClient,
    Job,
    WaitTimeout,
    attachment,
    when,
)
from tests.support.smtp_sink import Received, SMTPSink, free_port
from tests.support.stack import ApiServer, client_stack

REFUSED = "refused@example.com"
VARIABLES_TEMPLATE = (
    "Subject: {{ subject }}\nContent-Type: text/plain\n\nHello {{ name }}, code {{ code }}, team {{ team }}.\n"
)


@pytest.fixture(scope="module")
def relay() -> Iterator[SMTPSink]:
    server = SMTPSink().start()
    server.handler.reject_rcpt.add(REFUSED)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stack(postgres_url: str, redis_prefix: str, relay: SMTPSink, tmp_path_factory) -> Iterator[ApiServer]:
    folder = Path(tmp_path_factory.mktemp("client"))
    with client_stack(postgres_url, redis_prefix, relay.port, folder, {"variables": VARIABLES_TEMPLATE}) as api:
        yield api


@pytest.fixture
def client(stack: ApiServer) -> Iterator[EmailServiceClient]:
    with EmailServiceClient(stack.url, api_key=stack.api_key, timeout=15) as service:
        yield service


@pytest.fixture
def operator(stack: ApiServer) -> Iterator[EmailServiceClient]:
    """The client with a key of the admin role, which manages the shared suppression list."""
    key = stack.new_key(f"operator-{uuid.uuid4().hex[:8]}", role="admin")
    with EmailServiceClient(stack.url, api_key=key, timeout=15) as service:
        yield service


@pytest.fixture
def slow_relay(relay: SMTPSink) -> Iterator[SMTPSink]:
    """Each message takes 0.1 s: 4 connections send about 40 a second, so a job lasts long enough to act on."""
    relay.handler.delay = 0.1
    yield relay
    relay.handler.delay = 0.0


def addresses(count: int, prefix: str = "r") -> list[str]:
    tag = uuid.uuid4().hex[:8]
    return [f"{prefix}{i}-{tag}@example.com" for i in range(count)]


def received(relay: SMTPSink, address: str) -> list[Received]:
    return [item for item in relay.handler.messages() if item.recipients == [address]]


def wait_for(client: EmailServiceClient, job_id: str, check: Any, timeout: float = 15) -> Job:
    deadline = time.monotonic() + timeout
    while not check(job := client.get_job(job_id)):
        assert time.monotonic() < deadline, job
        time.sleep(0.05)
    return job


# ---- the client alone


def test_importing_the_client_loads_no_server_framework():
    code = "import sys, email_service.client; print(sorted({'flask', 'sqlalchemy', 'celery'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_attachment_is_base64_with_a_guessed_content_type(tmp_path: Path):
    path = tmp_path / "report.pdf"
    path.write_bytes(b"%PDF-1.4 \x00\xff")
    item = attachment(path)
    assert item == {
        "filename": "report.pdf",
        "content": base64.b64encode(b"%PDF-1.4 \x00\xff").decode(),
        "content_type": "application/pdf",
    }
    assert attachment(b"a,b\n", filename="data.csv")["content_type"] == "text/csv"
    assert attachment(b"??", filename="blob")["content_type"] == "application/octet-stream"
    assert attachment(b"x", filename="x.txt", content_type="text/x-custom")["content_type"] == "text/x-custom"
    with pytest.raises(ValueError, match="filename"):
        attachment(b"no name")


def test_times_are_sent_as_iso_8601():
    assert when(timedelta(minutes=10)) == "PT600S"
    assert when(timedelta(seconds=1.5)) == "PT1.5S"
    assert when(datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2030-01-02T03:04:05+00:00"
    assert when("PT10M") == "PT10M"
    with pytest.raises(ValueError, match="time zone"):
        when(datetime(2030, 1, 2))


def test_unreachable_service_raises_connection_failed():
    service = EmailServiceClient(f"http://127.0.0.1:{free_port()}", timeout=2)
    with service, pytest.raises(ConnectionFailed) as caught:
        service.get_job("anything")
    assert isinstance(caught.value, ClientError)
    assert isinstance(caught.value.__cause__, httpx.ConnectError)


# ---- jobs


def test_send_then_follow_the_job_and_page_through_its_recipients(client: EmailServiceClient, relay: SMTPSink):
    recipients: list[Any] = addresses(23)
    recipients.append({"email": "eleven-" + recipients[0], "name": "Eleven", "variables": {"code": "011"}})
    recipients.append(REFUSED)
    accepted = client.send(recipients, "Demogorgon", "Run for your life")
    assert accepted == {"id": accepted["id"], "status": "queued", "total": 25, "replayed": False}

    seen: list[Job] = []
    job = client.wait(accepted["id"], poll_interval=0.1, timeout=30, on_progress=seen.append)
    assert job["status"] == "completed" and seen[-1] == job
    assert (job["counts"]["sent"], job["counts"]["failed"], job["current"], job["progress"]) == (24, 1, 25, 1.0)
    assert client.get_job(accepted["id"])["finished_at"] == job["finished_at"]

    everyone = list(client.iter_recipients(accepted["id"], page_size=10))
    assert [r["position"] for r in everyone] == list(range(25))
    first = client.list_recipients(accepted["id"], limit=10)
    assert first["next_after"] == 9 and first["items"] == everyone[:10]
    [failed] = client.iter_recipients(accepted["id"], status="failed")
    assert (failed["email"], failed["status"], failed["error_code"]) == (REFUSED, "failed", 550)
    assert "No such user" in (failed["error"] or "")
    eleven = received(relay, "eleven-" + recipients[0])
    assert eleven[0].message["To"].addresses[0].display_name == "Eleven"
    assert eleven[0].message["Message-ID"] == everyone[23]["message_id"]


def test_jobs_are_listed_newest_first_across_pages(client: EmailServiceClient):
    ids = [client.send(addresses(1), f"job {i}")["id"] for i in range(3)]
    page = client.list_jobs(limit=2)
    assert [job["id"] for job in page["items"]] == ids[::-1][:2]
    assert page["next_before"] == ids[1]
    newest = [job["id"] for job, _ in zip(client.iter_jobs(page_size=2), range(3), strict=False)]
    assert newest == ids[::-1]


def test_cancel_stops_a_sending_job_and_a_finished_job_cannot_be_cancelled(
    client: EmailServiceClient, slow_relay: SMTPSink
):
    job_id = client.send(addresses(200), "to be cancelled")["id"]
    wait_for(client, job_id, lambda job: job["counts"]["sent"] > 0)
    assert client.cancel(job_id)["id"] == job_id
    job = client.wait(job_id, poll_interval=0.1, timeout=15)
    assert job["status"] == "cancelled"
    assert job["counts"]["cancelled"] > 0 and job["counts"]["sent"] < 200, {k: v for k, v in job["counts"].items() if v}
    with pytest.raises(ApiError) as caught:
        client.cancel(job_id)
    assert (caught.value.status_code, caught.value.code) == (409, "conflict")


def test_retry_sends_again_to_the_failed_recipients(client: EmailServiceClient, relay: SMTPSink, operator):
    ok, flaky = addresses(2)
    relay.handler.reject_rcpt.add(flaky)
    try:
        job_id = client.send([ok, flaky], "twice")["id"]
        first = client.wait(job_id, poll_interval=0.1, timeout=15)
        assert (first["counts"]["sent"], first["counts"]["failed"]) == (1, 1)
    finally:
        relay.handler.reject_rcpt.discard(flaky)
    # Its "no such user" put it on the shared suppression list, which an operator lifts.
    assert flaky not in {s["email"] for s in client.iter_suppressions()}
    with pytest.raises(ApiError) as forbidden:
        client.unsuppress(flaky, shared=True)
    assert forbidden.value.status_code == 403
    assert [s["reason"] for s in operator.iter_suppressions(shared=True) if s["email"] == flaky] == ["bounced"]
    operator.unsuppress(flaky, shared=True)
    again = client.retry(job_id)
    assert again["id"] == job_id and again["status"] not in ("completed", "cancelled")
    job = client.wait(job_id, poll_interval=0.1, timeout=15)
    assert (job["status"], job["counts"]["sent"], job["counts"]["failed"]) == ("completed", 2, 0)
    assert len(received(relay, flaky)) == 1
    with pytest.raises(ApiError) as caught:
        client.retry(job_id)
    assert caught.value.status_code == 409


def test_wait_reports_each_poll_and_gives_up_at_its_timeout(client: EmailServiceClient, slow_relay: SMTPSink):
    job_id = client.send(addresses(200), "slow")["id"]
    polls: list[Job] = []
    try:
        with pytest.raises(WaitTimeout) as caught:
            client.wait(job_id, poll_interval=0.1, timeout=0.5, on_progress=polls.append)
        assert caught.value.job["id"] == job_id
        assert caught.value.job["status"] in ("queued", "sending")
        assert 3 <= len(polls) <= 7 and polls[-1] == caught.value.job
    finally:
        client.cancel(job_id)


def test_refusals_raise_api_error_with_every_detail(client: EmailServiceClient):
    with pytest.raises(ApiError) as caught:
        client.send(["fine@example.com", "not an address"], "bad\nsubject")
    error = caught.value
    assert (error.status_code, error.code) == (422, "validation_error")
    assert {(d["field"], d.get("index")) for d in error.details} == {("recipients[1]", 1), ("subject", None)}
    assert "recipients[1], recipient 1: " in str(error) and "subject: control character" in str(error)

    with pytest.raises(ApiError) as caught:
        client.get_job("no-such-job")
    assert (caught.value.status_code, caught.value.code) == (404, "not_found")
    job_id = client.send(addresses(1), "s")["id"]
    with pytest.raises(ApiError) as caught:
        client.list_recipients(job_id, status="delivered")
    assert caught.value.details[0]["field"] == "status"


class RecordingTransport(httpx.HTTPTransport):
    """The real transport, keeping each request it carries to the real API."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return super().handle_request(request)


def test_api_key_and_extra_headers_go_with_every_request(stack: ApiServer):
    transport = RecordingTransport()
    with EmailServiceClient(
        stack.url, api_key=stack.api_key, headers={"X-Caller": "billing"}, transport=transport
    ) as api:
        api.list_jobs(limit=1)
    with EmailServiceClient(stack.url, transport=transport) as anonymous, pytest.raises(ApiError) as refused:
        anonymous.list_jobs(limit=1)
    assert (refused.value.status_code, refused.value.code) == (401, "unauthorized")
    keyed, plain = transport.requests
    assert keyed.headers["Authorization"] == f"Bearer {stack.api_key}" and keyed.headers["X-Caller"] == "billing"
    assert keyed.headers["User-Agent"].startswith("email-service-client/")
    assert "Authorization" not in plain.headers


def test_account_names_the_keys_account_for_each_of_its_keys(client: EmailServiceClient, stack: ApiServer):
    mine = client.account()
    assert (mine["name"], mine["key"], mine["role"]) == (stack.account_name, stack.account_name, "account")
    assert mine["webhook_signing"] == "own" and "secret" not in str(mine).replace("previous_secret_until", "")
    admin_key = stack.new_key(f"{stack.account_name}-ops", account=stack.account_name, role="admin")
    with EmailServiceClient(stack.url, api_key=admin_key, timeout=15) as admin:
        assert {**admin.account(), "key": None, "role": None} == {**mine, "key": None, "role": None}
        assert admin.account()["role"] == "admin"


# ---- endpoints and fields the server adds (pause/resume, idempotency, templates, new POST fields)


def test_pause_holds_a_job_until_resume_and_a_job_changes_lane(client: EmailServiceClient, slow_relay: SMTPSink):
    job_id = client.send(addresses(120), "paused", lane="bulk")["id"]
    wait_for(client, job_id, lambda job: job["counts"]["sent"] > 0)
    try:
        sending = client.set_lane(job_id, "transactional")
        assert sending["lane"] == "transactional" and sending["queue"]["waiting"] > 0
        assert client.pause(job_id)["status"] == "paused"
        held = wait_for(client, job_id, lambda job: job["counts"]["sending"] == 0)  # in-flight messages finish
        time.sleep(1.0)
        still = client.get_job(job_id)
        assert still["status"] == "paused" and still["counts"]["sent"] == held["counts"]["sent"] < 120
        assert still["queue"] is None, "a paused job waits for nothing"
        assert client.resume(job_id)["status"] in ("queued", "sending")
        job = client.wait(job_id, poll_interval=0.1, timeout=15)
    finally:
        if client.get_job(job_id)["status"] not in ("completed", "cancelled"):
            client.cancel(job_id)
    assert (job["status"], job["counts"]["sent"]) == ("completed", 120)


def test_idempotent_send_answers_the_first_job(client: EmailServiceClient):
    key = uuid.uuid4().hex
    recipients = addresses(2)
    first = client.send(recipients, "once", idempotency_key=key)
    replay = client.send(recipients, "once", idempotency_key=key)
    assert replay == {**first, "replayed": True} and first["replayed"] is False
    with pytest.raises(ApiError) as caught:
        client.send(recipients, "a different body", idempotency_key=key)
    assert caught.value.status_code == 422
    assert [job["id"] for job in client.list_jobs(limit=1)["items"]] == [first["id"]]


def test_concurrent_sends_with_one_key_make_one_job(client: EmailServiceClient, stack: ApiServer):
    key, recipients = uuid.uuid4().hex, addresses(2000)  # big enough to take a while to store
    outcomes: list[Any] = []

    def post() -> None:
        with EmailServiceClient(stack.url, api_key=stack.api_key, timeout=30) as own:
            try:
                outcomes.append(own.send(recipients, "racing", idempotency_key=key)["id"])
            except ApiError as exc:
                outcomes.append(exc.status_code)

    threads = [threading.Thread(target=post) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    job_ids = {outcome for outcome in outcomes if isinstance(outcome, str)}
    for job_id in job_ids:
        with contextlib.suppress(ApiError):  # finished already
            client.cancel(job_id)
    assert len(outcomes) == 3 and len(job_ids) == 1  # the duplicates waited for the first and got its job
    assert all(isinstance(outcome, str) for outcome in outcomes), outcomes


def test_new_fields_reach_the_job_and_every_message(client: EmailServiceClient, relay: SMTPSink):
    first, second = addresses(2)
    hook = f"http://127.0.0.1:{free_port()}/hook"  # nobody listens: a failed webhook stays on this machine
    accepted = client.send(
        [{"email": first, "name": "Ann", "variables": {"code": "011"}}, {"email": second, "name": "Bob"}],
        "Fields",
        template="variables",
        variables={"code": "000", "team": "Hawkins"},
        reply_to="replies@example.org",
        headers={"X-Campaign": "spring"},
        tags=["spring", "test"],
        metadata={"order": 42},
        attachments=[attachment(b"hello", filename="hello.txt")],
        expires_at=timedelta(hours=1),
        callback_url=hook,
    )
    job = client.wait(accepted["id"], poll_interval=0.1, timeout=15)
    assert (job["status"], job["counts"]["sent"]) == ("completed", 2)
    assert (job["tags"], job["metadata"], job["callback_url"]) == (["spring", "test"], {"order": 42}, hook)
    assert job["expires_at"] and job["send_at"] is None
    ann, bob = received(relay, first)[0].message, received(relay, second)[0].message
    assert ann["Reply-To"] == "replies@example.org" and ann["X-Campaign"] == "spring"
    assert "Hello Ann, code 011, team Hawkins." in ann.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Hello Bob, code 000, team Hawkins." in bob.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    [attached] = list(ann.iter_attachments())
    assert (attached.get_filename(), attached.get_content()) == ("hello.txt", "hello")


def test_scheduled_job_waits_for_its_send_at(client: EmailServiceClient):
    later = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    accepted = client.send(addresses(2), "later", send_at=later)
    assert accepted["status"] == "scheduled"
    job = client.get_job(accepted["id"])
    assert job["status"] == "scheduled" and datetime.fromisoformat(job["send_at"] or "") == later
    assert client.send(addresses(1), "in ten minutes", send_at=timedelta(minutes=10))["status"] == "scheduled"
    assert client.cancel(accepted["id"])["status"] == "cancelled"


def test_stored_templates_have_versions_previews_and_can_be_deleted(client: EmailServiceClient, relay: SMTPSink):
    name = f"tpl-{uuid.uuid4().hex[:8]}"
    created = client.create_template(name, subject="v1 {{ subject }}", text="One {{ content }}")
    assert (created["name"], created["version"], created["source"]) == (name, 1, "stored")
    with pytest.raises(ApiError) as caught:
        client.create_template(name, subject="again", text="again")
    assert caught.value.status_code == 409
    updated = client.update_template(name, subject="v2 {{ subject }}", text="Two {{ content }} for {{ name }}")
    assert updated["version"] == 2
    assert client.get_template(name)["version"] == 2
    assert client.get_template(name, version=1)["text"] == "One {{ content }}"
    assert sorted(t["version"] or 0 for t in client.template_versions(name)) == [1, 2]
    assert name in {t["name"] for t in client.list_templates()}

    preview = client.preview_template(name, subject="Hi", content="there", email="a@example.com", name="Ann")
    assert preview["subject"] == "v2 Hi" and "Two there for Ann" in (preview["text"] or "")

    old = addresses(1)[0]
    job_id = client.send([old], "pinned", "content", template=name, template_version=1)["id"]
    assert client.wait(job_id, poll_interval=0.1, timeout=15)["counts"]["sent"] == 1
    message = received(relay, old)[0].message
    assert message["Subject"] == "v1 pinned" and "One content" in message.get_content()

    client.delete_template(name)
    with pytest.raises(ApiError) as caught:
        client.get_template(name)
    assert caught.value.status_code == 404


def test_shared_templates_are_changed_with_a_key_of_the_admin_role(client: EmailServiceClient, stack: ApiServer):
    name = f"tpl-{uuid.uuid4().hex[:8]}"
    admin_key = stack.new_key(f"ops-{name}", role="admin")
    with EmailServiceClient(stack.url, api_key=admin_key, timeout=15) as operator:
        assert operator.create_template(name, text="shared", shared=True)["shared"] is True
        assert operator.update_template(name, text="shared v2", shared=True)["version"] == 2
    seen = client.get_template(name)
    assert (seen["text"], seen["shared"]) == ("shared v2", True)
    for change in (
        lambda: client.update_template(name, text="mine", shared=True),
        lambda: client.delete_template(name, shared=True),
        lambda: client.delete_template(name),
    ):
        with pytest.raises(ApiError) as caught:
            change()
        assert caught.value.status_code == 403
    own = client.update_template(name, text="mine")
    assert (own["version"], own["shared"]) == (1, False)
    with EmailServiceClient(stack.url, api_key=admin_key, timeout=15) as operator:
        operator.delete_template(name, shared=True)
    assert client.get_template(name)["text"] == "mine"


def test_draft_previews_render_and_render_errors_name_line_and_variable(client: EmailServiceClient):
    draft = client.preview_draft(
        {"subject": "Hello {{ name }}", "html": "<p>{{ content }}</p>"}, content="<b>", name="Ann"
    )
    assert draft["subject"] == "Hello Ann" and "&lt;b&gt;" in (draft["html"] or "")
    with pytest.raises(ApiError) as caught:
        client.preview_draft({"subject": "s", "text": "first line\n{{ missing }}"})
    error = caught.value
    assert error.status_code == 422
    [detail] = [d for d in error.details if d.get("variable")]
    assert detail["variable"] == "missing" and isinstance(detail.get("line"), int)
    assert "variable 'missing'" in str(error)


def test_suppressions_are_listed_added_and_removed(client: EmailServiceClient):
    address = addresses(1, prefix="suppressed")[0]
    assert client.suppress(address) is True and client.suppress(address) is False
    assert address in {s["email"] for s in client.iter_suppressions(page_size=2)}, "followed across pages"
    assert [s["shared"] for s in client.iter_suppressions() if s["email"] == address] == [False]
    job = client.wait(client.send([address], "s", list_unsubscribe=False)["id"], poll_interval=0.2, timeout=30)
    assert job["counts"]["suppressed"] == 1
    client.unsuppress(address)
    assert address not in {s["email"] for s in client.iter_suppressions()}
    with pytest.raises(ApiError) as missing:
        client.unsuppress(address)
    assert missing.value.status_code == 404
