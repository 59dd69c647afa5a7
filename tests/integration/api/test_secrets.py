"""Secrets stay where they are needed: canaries planted in the relay password, the database password, the
API key and the webhook secret are looked for in every log, everything the broker saw, every error body,
the OpenAPI document, /readyz and /metrics, after a job with failures and refused requests; readiness
errors never quote a password; INFO logs mask addresses."""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import re
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from email_service.app import create_app
from email_service.config import Settings
from email_service.logs import MaskingFormatter
from email_service.storage.migrate import upgrade
from tests.support.servers import POSTGRES_ADMIN, REDIS_URL
from tests.support.smtp_sink import SinkHandler, SMTPSink, free_port
from tests.support.stack import ApiServer, WorkerProcess, relay_env, settings_from
from tests.support.webhook_receiver import LOOPBACK_NETWORKS, WebhookReceiver

RELAY_USER = "relay-user"
TASK_ARG = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")  # a job id


@dataclass
class QuotingRelay(SinkHandler):
    """Refuses or defers like a real relay: quoting the recipient in its reply."""

    password: bytes = b""
    logins: list[bytes] = field(default_factory=list)

    async def handle_RCPT(self, server: SMTP, session: object, envelope, address: str, rcpt_options: list[str]) -> str:
        if address in self.reject_rcpt:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown in virtual mailbox table"
        if address in self.defer_rcpt:
            return f"451 4.7.1 <{address}>: Recipient address rejected: Greylisted, see http://postgrey.example/"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    def authenticate(self, server: SMTP, session: object, envelope: object, mechanism: str, data: Any) -> AuthResult:
        """aiosmtpd's authenticator: the relay user with the canary password, nothing else."""
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (RELAY_USER.encode(), self.password)
        if ok:
            self.logins.append(data.login)
        return AuthResult(success=ok)


@contextlib.contextmanager
def canary_database(password: str) -> Iterator[str]:
    """A database owned by a role of our own whose password is ``password``; both dropped at the end."""
    name = f"es_canary_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE \"{name}\" LOGIN PASSWORD '{password}'")
        admin.execute(f'CREATE DATABASE "{name}" OWNER "{name}"')
    try:
        url = f"postgresql+psycopg://{name}:{password}@127.0.0.1:5432/{name}"
        upgrade(url)
        yield url
    finally:
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.execute(f'DROP ROLE IF EXISTS "{name}"')


class BrokerTap:
    """Every command Redis runs on keys under ``prefix`` while the tap is open (Redis MONITOR): what the
    broker, the rate limiter and the quotas wrote, including task messages consumed since."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.commands: list[str] = []
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._listen, daemon=True)

    def __enter__(self) -> BrokerTap:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        with redis.Redis.from_url(REDIS_URL) as client:
            client.ping()  # the monitor wakes up on any command and sees the stop
        self._thread.join(10)

    def _listen(self) -> None:
        with redis.Redis.from_url(REDIS_URL) as client, client.monitor() as monitor:
            self._ready.set()
            while not self._stop.is_set():
                try:
                    command = monitor.next_command()["command"]
                except (AttributeError, ValueError):  # a line of another client's the parser does not know
                    continue
                if self.prefix in command:
                    self.commands.append(command)

    def task_messages(self) -> list[dict[str, Any]]:
        """The Celery messages pushed to a queue: headers and decoded body."""
        messages = []
        for command in self.commands:
            if command.startswith("LPUSH"):
                header = re.search(r'"task": "([^"\\]+)', command)
                body = re.search(r'"body": "([A-Za-z0-9+/=]+)"', command)
                assert header and body, command[:300]
                messages.append({"task": header.group(1), "body": json.loads(base64.b64decode(body.group(1)))})
        return messages


def redis_dump(prefix: str) -> list[bytes]:
    """Every key under ``prefix`` and its value, whatever its type."""
    found: list[bytes] = []
    with redis.Redis.from_url(REDIS_URL) as client:
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            found.append(key)
            kind = client.type(key)
            if kind == b"string":
                found.append(client.get(key) or b"")
            elif kind == b"list":
                found += client.lrange(key, 0, -1)
            elif kind == b"hash":
                for name, value in client.hgetall(key).items():
                    found += [name, value]
            elif kind == b"set":
                found += client.smembers(key)
            elif kind == b"zset":
                found += [member for member, _ in client.zrange(key, 0, -1, withscores=True)]
            else:
                raise AssertionError(f"unexpected Redis type {kind!r} for {key!r}")
    return found


def _forms(secret: str) -> list[bytes]:
    """The secret as it could show: plain, base64 (AUTH LOGIN sends it so), inside AUTH PLAIN's base64."""
    plain = secret.encode()
    return [
        plain,
        base64.b64encode(plain),
        base64.b64encode(b"\0" + RELAY_USER.encode() + b"\0" + plain),
        base64.b64encode(RELAY_USER.encode() + b"\0" + RELAY_USER.encode() + b"\0" + plain),
    ]


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
def test_secrets_never_leak_and_info_logs_mask_addresses(redis_prefix: str, tmp_path: Path) -> None:
    relay_password = f"relay-canary-{secrets.token_hex(8)}"
    database_password = f"db-canary-{secrets.token_hex(8)}"
    webhook_secret = f"whsec-canary-{secrets.token_hex(8)}"
    prefix = f"{redis_prefix}secrets-{uuid.uuid4().hex[:8]}:"
    tag = uuid.uuid4().hex[:8]  # in every address, so that a leaked local part is found
    delivered = [f"will-{tag}@example.com", f"eleven-{tag}@example.org", f"dustin.{tag}@bücher.de"]
    rejected = [f"nobody-{tag}@example.com", f"ghost-{tag}@example.net"]
    deferred = [f"mike-{tag}@example.com"]

    handler = QuotingRelay(reject_rcpt=set(rejected), defer_rcpt=set(deferred), password=relay_password.encode())
    relay = SMTPSink(handler, auth_required=True, auth_require_tls=False, authenticator=handler.authenticate).start()
    receiver = WebhookReceiver().start()
    errors: list[httpx.Response] = []
    with canary_database(database_password) as database_url, BrokerTap(prefix) as tap:
        env = relay_env(
            database_url,
            REDIS_URL,
            prefix,
            relay.port,
            MAIL_USERNAME=RELAY_USER,
            MAIL_PASSWORD=relay_password,
            WEBHOOK_SECRET=webhook_secret,
            WEBHOOK_ALLOWED_NETWORKS=LOOPBACK_NETWORKS,
            LOG_LEVEL="INFO",
            LOG_PATH=str(tmp_path / "worker-file.log"),
            BATCH_SIZE="2",
        )
        api = ApiServer(settings_from({**env, "LOG_PATH": str(tmp_path / "api.log")})).start()
        worker = None
        try:
            assert api.api_key is not None
            queued = _post_job(api, delivered + rejected + deferred, receiver.url)
            # Refused requests: an invalid body, a bad template, a key that is not one, no key at all.
            errors.append(api.post_job({"recipients": ["not-an-address", f"x-{tag}@"], "subject": "a\nBcc: b"}))
            errors.append(_post_job(api, delivered[:1], receiver.url, template="no-such-template"))
            bad = api.client.post("/api/templates", json={"name": f"bad-{tag}", "text": "{{ secret_variable }}"})
            assert bad.status_code == 201, bad.text
            errors.append(_post_job(api, delivered[:1], receiver.url, template=f"bad-{tag}"))
            sandbox = "{{ ''.__class__.__mro__[1].__subclasses__() }}"
            errors.append(api.client.post("/api/templates/preview", json={"template": {"text": sandbox}}))
            errors.append(httpx.post(f"{api.url}/api/email/", json={}, headers={"X-API-Key": f"es_{relay_password}"}))
            errors.append(httpx.get(f"{api.url}/api/email/{queued}"))
            errors.append(api.client.get(f"/api/email/{uuid.uuid4()}"))
            assert [e.status_code for e in errors] == [422, 422, 422, 422, 401, 401, 404], [e.text for e in errors]

            worker = WorkerProcess(env, tmp_path / "worker.log").wait_ready()
            counts = _wait_until_tried(api, queued, total=len(delivered + rejected + deferred))
            assert (counts["sent"], counts["failed"], counts["deferred"]) == (3, 2, 1), counts
            _wait_for(lambda: len(receiver.deliveries(queued)) >= 1, "the recipient.failed event")
            openapi = httpx.get(f"{api.url}/api/openapi.json")
            assert openapi.status_code == 200
            health = [httpx.get(f"{api.url}/readyz", timeout=10), httpx.get(f"{api.url}/metrics")]
            assert [h.status_code for h in health] == [200, 200], health[0].text
        finally:
            if worker is not None:
                worker.stop()
            api.stop()
            _close_log_file(tmp_path / "api.log")
            relay.stop()
            receiver.stop()
    # Collected once every process stopped and flushed its logs.
    logs = {path.name: path.read_bytes() for path in tmp_path.glob("*.log*")}
    assert set(logs) >= {"worker.log", "worker-file.log", "api.log"}
    stored = redis_dump(prefix)
    tapped = [command.encode() for command in tap.commands]
    bodies = [response.content for response in errors]
    webhooks = [repr(d.headers).encode() + d.body for d in receiver.deliveries()]
    places: dict[str, list[bytes]] = {
        **{f"log {name}": [text] for name, text in logs.items()},
        "redis keys and values": stored,
        "redis commands": tapped,
        "error bodies": bodies,
        "openapi.json": [openapi.content],
        "readyz and metrics": [h.content for h in health],
        "webhook deliveries": webhooks,
    }

    # The canaries were really used, and the places really hold what the stack did.
    assert handler.logins and len(handler.messages()) == 3, "the worker logged in to the relay with the canary"
    assert queued.encode() in logs["worker-file.log"] and queued.encode() in logs["api.log"]
    assert tapped and webhooks
    for name, secret in [
        ("relay password", relay_password),
        ("database password", database_password),
        ("webhook secret", webhook_secret),
        ("API key", api.api_key),
    ]:
        for place, texts in places.items():
            for form in _forms(secret):
                assert not any(form in text for text in texts), f"the {name} ({form!r}) is in the {place}"

    # Task messages carry no content: a wake-up has no argument, any other task a job id.
    messages = tap.task_messages()
    assert "email_service.wake" in {m["task"] for m in messages}
    for message in messages:
        args, kwargs, _ = message["body"]
        assert kwargs == {} and all(TASK_ARG.fullmatch(arg) for arg in args), message

    # At INFO, no address of the job is in a log in clear, not even its local part.
    for address in delivered + rejected + deferred:
        local = address.partition("@")[0]
        for name, text in logs.items():
            assert local.encode() not in text, f"{address} is in {name} in clear"
    assert b"n***@example.com" in logs["worker-file.log"], "the refused recipient is logged masked"


def test_readiness_errors_name_the_failure_never_a_password(tmp_path: Path) -> None:
    """Each check failing with a password in its URL (or the relay's): the answer says what failed, and
    none of the passwords."""
    password = f"url-canary-{secrets.token_hex(8)}"
    closed = free_port()
    failing = {
        "database": {"database_url": f"postgresql+psycopg://postgres:{password}@127.0.0.1:{closed}/db"},
        "database ": {"database_url": f"postgresql+psycopg://postgres:{password}@127.0.0.1:5432/no_such_database"},
        "broker": {"celery_broker_url": f"redis://user:{password}@127.0.0.1:{closed}/0"},
        "broker ": {"celery_broker_url": f"amqp://guest:{password}@127.0.0.1:5672//"},  # a login RabbitMQ refuses
        "relay": {"mail_port": closed},
    }
    for check, values in failing.items():
        settings = Settings(
            data_dir=tmp_path, mail_server="127.0.0.1", mail_username=RELAY_USER, mail_password=password, **values
        )
        answer = create_app(settings).test_client().get("/readyz")
        assert answer.status_code == 503, check
        body = answer.get_json()
        assert body["checks"][check.strip()]["ok"] is False and body["checks"][check.strip()]["error"], body
        assert not any(form in answer.data for form in _forms(password)), f"{check}: {answer.text}"


def _post_job(api: ApiServer, recipients: list[str], callback_url: str, template: str = "default") -> Any:
    answer = api.post_job(
        {
            "recipients": [{"email": address, "name": "Secret Keeper"} for address in recipients],
            "subject": "Canaries",
            "content": "Nothing to see",
            "template": template,
            "callback_url": callback_url,
        }
    )
    if template != "default":
        return answer
    assert answer.status_code == 202, answer.text
    return answer.json()["id"]


def _wait_until_tried(api: ApiServer, job_id: str, total: int, timeout: float = 30) -> dict[str, int]:
    """The job's counts once every recipient was tried: sent, failed or deferred."""
    deadline = time.monotonic() + timeout
    while True:
        counts: dict[str, int] = api.client.get(f"/api/email/{job_id}").json()["counts"]
        if counts["sent"] + counts["failed"] + counts["deferred"] == total:
            return counts
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} not tried after {timeout}s: {counts}")
        time.sleep(0.1)


def _wait_for(condition: Any, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} after {timeout}s")
        time.sleep(0.1)


def _close_log_file(path: Path) -> None:
    """The API ran in this process: close its log file, so later tests do not write to it."""
    logger = logging.getLogger("email_service")
    for handler in list(logger.handlers):
        if getattr(handler, "baseFilename", None) == str(path):
            logger.removeHandler(handler)
            handler.close()


def test_records_at_info_and_above_have_their_addresses_masked_exception_text_included() -> None:
    formatter = MaskingFormatter("%(levelname)s %(message)s")

    def formatted(level: int, message: str, *args: object, error: Exception | None = None) -> str:
        exc_info = (type(error), error, None) if error is not None else None
        return formatter.format(logging.LogRecord("email_service.x", level, __file__, 1, message, args, exc_info))

    reply = "550 5.1.1 <will.byers@example.com>: Recipient address rejected"
    assert (
        formatted(logging.INFO, "failed: %s", reply)
        == "INFO failed: 550 5.1.1 <w***@example.com>: Recipient address rejected"
    )
    assert formatted(logging.WARNING, "to jörg@bücher.de, eleven+x@mail.example.org.") == (
        "WARNING to j***@bücher.de, e***@mail.example.org."
    )
    assert "w***@example.com" in formatted(logging.ERROR, "oops", error=ValueError("bad will@example.com"))
    assert "will@example.com" not in formatted(logging.ERROR, "oops", error=ValueError("bad will@example.com"))
    assert formatted(logging.DEBUG, "to will@example.com") == "DEBUG to will@example.com"  # asked for: kept
    assert formatted(logging.INFO, "worker celery@localhost ready, job 12 of 3 batches") == (
        "INFO worker celery@localhost ready, job 12 of 3 batches"
    )
