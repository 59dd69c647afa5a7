"""Readiness: can this deployment reach its database, its broker and its SMTP relay right now?

The checks run at once, each in a thread of its own under short timeouts; whatever has not answered
by the deadline is reported as not answering, so a caller gets its answer within ~2 s even when a
server hangs. Error texts name the failure, never a password: the URLs' and the relay's are masked.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from kombu.connection import Connection
from sqlalchemy import text
from sqlalchemy.engine import make_url

from email_service.delivery.smtp import greet_relay
from email_service.runtime.broker import broker_transport_options
from email_service.services import Services

CHECK_TIMEOUT = 1.5  # each check's connect and read timeouts
DEADLINE = 2.0  # the answer is given then, whatever has not answered yet
_CREDENTIALS_IN_URL = re.compile(r"(\w+://[^:/@\s]*:)[^@\s]*@")


@dataclass(frozen=True)
class Check:
    ok: bool
    ms: float
    error: str | None = None

    def as_json(self) -> dict[str, object]:
        body: dict[str, object] = {"ok": self.ok, "ms": self.ms}
        if self.error is not None:
            body["error"] = self.error
        return body


def check(services: Services) -> dict[str, Check]:
    """Each check by name: database, broker, and relay (not with MAIL_SUPPRESS_SEND, which sends nothing)."""
    settings = services.settings
    probes: dict[str, Callable[[], object]] = {
        "database": lambda: _query_database(services),
        "broker": lambda: _connect_broker(services),
    }
    if not settings.mail_suppress_send:
        probes["relay"] = lambda: greet_relay(settings, CHECK_TIMEOUT)
    secrets = _secrets(services)
    results: dict[str, Check] = {}
    threads = [
        threading.Thread(target=_run, args=(probe, name, results, secrets), name=f"readiness-{name}", daemon=True)
        for name, probe in probes.items()
    ]
    deadline = time.monotonic() + DEADLINE
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    silent = Check(False, DEADLINE * 1000, f"no answer within {DEADLINE:g} s")
    return {name: results.get(name, silent) for name in probes}


def _run(probe: Callable[[], object], name: str, results: dict[str, Check], secrets: list[str]) -> None:
    started = time.perf_counter()
    try:
        probe()
    except Exception as exc:  # any failure is the answer: not ready, and why
        results[name] = Check(False, _ms_since(started), _describe(exc, secrets))
    else:
        results[name] = Check(True, _ms_since(started))


def _query_database(services: Services) -> None:
    with services.engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def _connect_broker(services: Services) -> None:
    """Connect to the Celery broker as the workers do, once, without retrying."""
    settings = services.settings
    options = {
        **broker_transport_options(settings),
        "socket_connect_timeout": CHECK_TIMEOUT,  # Redis's
        "socket_timeout": CHECK_TIMEOUT,
    }
    with Connection(settings.celery_broker_url, connect_timeout=CHECK_TIMEOUT, transport_options=options) as broker:
        broker.ensure_connection(max_retries=0, timeout=CHECK_TIMEOUT)


def describe_failure(services: Services, exc: Exception) -> str:
    """``exc`` in one line fit for a log or an answer: the driver's error, never a password."""
    return _describe(exc, _secrets(services))


def _secrets(services: Services) -> list[str]:
    """The passwords an error text could quote: the database's, the broker's and the relay's."""
    settings = services.settings
    found = [make_url(settings.database_url).password, settings.mail_password.get_secret_value()]
    found += [urlsplit(url).password for url in settings.celery_broker_url.split(";")]
    return [secret for secret in found if secret]


def _describe(exc: Exception, secrets: list[str]) -> str:
    """The failure in one line: SQLAlchemy's wrapper gives way to the driver's error; passwords masked."""
    cause = getattr(exc, "orig", None) or exc  # SQLAlchemy's DBAPIError wraps the driver's
    lines = str(cause).strip().splitlines()
    message = f"{type(cause).__name__}: {lines[0] if lines else 'no detail'}"
    for secret in secrets:
        message = message.replace(secret, "***")
    return _CREDENTIALS_IN_URL.sub(r"\1***@", message)[:300]


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)
