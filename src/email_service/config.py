"""Settings read from the environment, once, by each process's entry point (see bootstrap)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from email_service.errors import InvalidAddress
from email_service.message.mailboxes import parse_mailbox
from email_service.outbound.destinations import IPNetwork, parse_networks, url_refusal

_RATE = re.compile(r"\s*([^=\s]+)\s*=\s*([0-9.]+)\s*/\s*(s|m|h)\s*")
_PER = {"s": 1.0, "m": 60.0, "h": 3600.0}
_DNS_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
DNS_NAME = re.compile(rf"{_DNS_LABEL}(?:\.{_DNS_LABEL})*")


def parse_domain_rates(value: object) -> object:
    """``gmail.com=20/s,yahoo.com=600/m`` -> messages per second for each domain (a dict passes as it is)."""
    if not isinstance(value, str):
        return value
    rates: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        match = _RATE.fullmatch(item)
        if match is None:
            raise ValueError(f"DOMAIN_RATES: {item!r} is not like gmail.com=20/s")
        rates[match.group(1).lower()] = float(match.group(2)) / _PER[match.group(3)]
    return rates


# Messages per second for each recipient domain, written in the environment as ``gmail.com=20/s,yahoo.com=600/m``.
DomainRates = Annotated[dict[str, float], NoDecode, BeforeValidator(parse_domain_rates)]


# Networks written in the environment as ``10.0.0.0/8,fd00::/8``.
Networks = Annotated[tuple[IPNetwork, ...], NoDecode, BeforeValidator(parse_networks)]


def is_redis_url(url: str) -> bool:
    """Whether ``url`` names a Redis server (plain or TLS)."""
    return url.startswith(("redis://", "rediss://"))


class Settings(BaseSettings):
    """Every knob of the service; the names are the environment variables (case-insensitive).

    The tutorial's names (``MAIL_*``, ``CELERY_*``, ``LOG_*``) keep their meaning. With no
    environment at all the service runs on its embedded default: SQLite and a filesystem
    broker under ``DATA_DIR``, a local SMTP relay on port 1025.
    """

    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    data_dir: Path = Field(
        Path("var"), description="Folder for the embedded SQLite database, broker and catcher, and metrics files."
    )
    database_url: str = Field("", description="SQLAlchemy URL; empty means SQLite at DATA_DIR/email_service.db.")
    db_wait_seconds: float = Field(
        60, ge=0, description="Seconds a starting process waits for the database (serve) or its schema (worker)."
    )

    mail_server: str = Field("localhost", description="SMTP relay host.")
    mail_port: int = Field(1025, ge=1, le=65535, description="SMTP relay port.")
    mail_use_tls: bool = Field(False, description="Upgrade the relay connection with STARTTLS.")
    mail_use_ssl: bool = Field(False, description="Connect to the relay over implicit TLS.")
    mail_tls_ca_file: Path | None = Field(
        None, description="PEM file of the CA that signed the relay's certificate; the system's CAs when empty."
    )
    mail_username: str = Field("", description="Relay login; empty means no AUTH.")
    mail_password: SecretStr = Field(SecretStr(""), description="Relay password (never logged).")
    mail_default_sender: str = Field("email-service@localhost", description="From address of every message.")
    mail_max_emails: int | None = Field(None, ge=1, description="Messages per SMTP connection before reconnecting.")
    mail_suppress_send: bool = Field(False, description="Log messages instead of sending them.")
    mail_timeout: float = Field(30.0, gt=0, description="Seconds allowed for each SMTP operation.")
    dkim_domain: str = Field("", description="DKIM signing domain (d=); empty means messages are not signed.")
    dkim_selector: str = Field("", description="DKIM selector (s=): the key is at <selector>._domainkey.<domain>.")
    dkim_private_key_file: Path | None = Field(
        None, description="PEM file of the RSA or Ed25519 private DKIM key, read once at start-up (never logged)."
    )
    dkim_second_selector: str = Field(
        "", description="Selector of a second DKIM key, of the other algorithm; empty means one signature."
    )
    dkim_second_private_key_file: Path | None = Field(
        None,
        description="PEM file of the second DKIM key: RSA beside an Ed25519 DKIM_PRIVATE_KEY_FILE, or the reverse. "
        "Each message then carries both signatures, and the verifiers that know no Ed25519 (Mail::DKIM, "
        "used by SpamAssassin and amavis) check the RSA one.",
    )

    celery_broker_url: str = Field("filesystem://", description="Celery broker; filesystem:// keeps it under DATA_DIR.")
    celery_result_backend: str | None = Field(None, description="Celery result backend; unused by the service.")
    celery_queue: str = Field("email_service", description="Name of the queue the workers consume.")
    celery_broker_key_prefix: str = Field("", description="Prefix of every Redis key the broker writes.")
    broker_visibility_timeout: int = Field(
        3600, ge=10, description="Seconds Redis waits before giving an unacknowledged task to another worker."
    )
    worker_processes: int = Field(
        default_factory=lambda: os.cpu_count() or 1, ge=1, description="Celery worker processes `worker` runs."
    )
    smtp_concurrency: int = Field(50, ge=1, le=500, description="SMTP connections (threads) per worker process.")
    worker_nice: int = Field(
        10, ge=0, le=19, description="Niceness `worker` runs its processes at, so the API answers first; 0: unchanged."
    )

    retry_first_delay: float = Field(300, gt=0, description="Seconds before the first retry of a deferred recipient.")
    retry_max_delay: float = Field(4000, gt=0, description="Longest wait between two retries.")
    retry_lifetime: float = Field(86400, gt=0, description="Seconds after the job was accepted when retries stop.")
    throttle_delay: float = Field(2, gt=0, description="Pause of a connection the relay throttled (421, 454).")

    send_rate: float = Field(0, ge=0, description="Messages per second for all workers together; 0 = no limit.")
    send_burst: int = Field(
        0, ge=0, description="Messages that may go at once above SEND_RATE; 0 = one second's worth."
    )
    domain_rates: DomainRates = Field(
        default_factory=dict, description="Per recipient domain rates, e.g. `gmail.com=20/s,yahoo.com=600/m`."
    )
    hourly_quota: int = Field(0, ge=0, description="Messages per clock hour for all workers; 0 = no quota.")
    daily_quota: int = Field(0, ge=0, description="Messages per UTC day for all workers; 0 = no quota.")
    rate_limit_redis_url: str = Field(
        "", description="Redis holding the shared rate buckets; empty means the broker's if it is Redis."
    )
    rate_limit_outage_share: float = Field(
        0.25,
        gt=0,
        le=1,
        description="Share of every rate limit and quota each process may use on its own while the Redis of the "
        "limits is unreachable (it counts in memory then, and goes back to Redis when it answers).",
    )
    transactional_quota_reserve: float = Field(
        0.1,
        ge=0,
        le=1,
        description="Share of HOURLY_QUOTA and DAILY_QUOTA kept for transactional mail: bulk mail stops short of "
        "it (at least one message short); 0 = no reserve.",
    )

    scheduler_interval: float = Field(5, gt=0, description="Seconds between two sweeps of the scheduler.")
    transactional_max_recipients: int = Field(
        10,
        ge=0,
        description=(
            "A job that names no lane, of an account with no default lane, is transactional when it has at "
            "most this many recipients, bulk otherwise."
        ),
    )

    log_path: Path | None = Field(None, description="Rotating log file; empty means stderr only.")
    log_size: int = Field(10_000_000, ge=1, description="Bytes per log file before rotation.")
    log_count: int = Field(10, ge=0, description="Rotated log files kept.")
    log_encoding: str = Field("utf-8", description="Encoding of the log file.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", description="Minimum level logged."
    )

    templates_dir: Path | None = Field(None, description="Folder of .eml templates, searched before the built-in ones.")
    public_url: str = Field(
        "http://127.0.0.1:8000", description="Address of the API as recipients reach it, for unsubscribe links."
    )
    key_requests_per_minute: int = Field(
        0, ge=0, description="API requests per minute and account (all its keys together); 0 = no quota."
    )
    key_recipients_per_minute: int = Field(
        0, ge=0, description="Recipients per minute and key, counted when a job is accepted; 0 = no quota."
    )
    key_recipients_per_day: int = Field(0, ge=0, description="Recipients per UTC day and account; 0 = no quota.")
    recipient_domains: str = Field(
        "", description="Comma-separated domains recipients must be in (a staging guard); empty means any."
    )
    auth_disabled: bool = Field(
        False, description="Serve the API without API keys (`dev` on 127.0.0.1 does); never on a reachable host."
    )
    dashboard_secret: SecretStr = Field(
        SecretStr(""),
        description="Key (32 characters or more) that signs the dashboard's session cookies; empty = /dashboard/ "
        "is off. `email-service dev` makes one in DATA_DIR.",
    )
    dashboard_cookie_secure: bool = Field(
        True,
        description="Send the dashboard's session cookie over HTTPS only; `dev` on 127.0.0.1 turns it off "
        "(plain HTTP on this machine).",
    )
    dashboard_session_hours: float = Field(
        12, gt=0, le=24 * 30, description="How long a dashboard login lasts before the key is asked again."
    )
    proxy_hops: int = Field(
        0,
        ge=0,
        le=10,
        description="Reverse proxies in front of the API whose X-Forwarded-For/-Proto/-Host are trusted; 0 = none.",
    )
    request_read_timeout: float = Field(
        30,
        gt=0,
        description="Seconds `serve` gives a client to send a whole request, and to take its answer; past it the "
        "connection is closed. Requests are received without holding a thread, so slow clients wait alone.",
    )
    allowed_hosts: str = Field(
        "",
        description="Comma-separated host names and addresses the API answers to in the Host header (any port; "
        "others get 400, against DNS rebinding); empty = any. `email-service dev` sets localhost, 127.0.0.1, "
        "[::1] and its --host.",
    )
    max_recipients: int = Field(100_000, ge=1, description="Most recipients one job may have.")
    max_request_bytes: int = Field(25_000_000, ge=1024, description="Largest request body accepted (413 beyond).")
    max_attachment_bytes: int = Field(
        10_000_000, ge=0, description="Largest total size of a job's attachments, decoded (422 beyond)."
    )
    max_attachments: int = Field(10, ge=0, description="Most attachments one job may have.")
    max_schedule_days: int = Field(366, ge=1, description="How far ahead send_at and expires_at may be.")
    idempotency_hours: float = Field(24, gt=0, description="How long an Idempotency-Key is remembered.")

    webhook_url: str = Field("", description="Callback URL of the jobs that name none; empty means none.")
    webhook_allowed_networks: Networks = Field(
        default_factory=tuple,
        description="Comma-separated networks (CIDR) that webhooks may reach although they are not public, e.g. "
        "`10.0.0.0/8,fd00::/8` for receivers inside your network, `127.0.0.0/8,::1/128` for one on this machine; "
        "empty = public addresses only.",
    )
    webhook_secret: SecretStr = Field(
        SecretStr(""), description="Key of the HMAC-SHA256 signature of webhook events; required to send them."
    )
    webhook_timeout: float = Field(10, gt=0, description="Seconds a webhook receiver has to answer.")
    webhook_retry_first_delay: float = Field(
        30, gt=0, description="Seconds before an undelivered webhook event is sent again; doubles up to 1 h."
    )
    webhook_retry_lifetime: float = Field(
        86400, gt=0, description="Seconds during which an undelivered webhook event is retried."
    )
    bounce_domain: str = Field(
        "",
        description="Domain of the per-recipient envelope senders (VERP): bounces go to "
        "<BOUNCE_LOCAL_PART>+<signed token>@<BOUNCE_DOMAIN>, whose MX is `email-service bounces`; "
        "empty = off (MAIL FROM is the sender's address).",
    )
    bounce_local_part: str = Field("bounces", description="Local part of the envelope senders before the +token.")
    bounce_secret: SecretStr = Field(
        SecretStr(""),
        description="Key of the HMAC in the envelope senders' tokens and in every Message-ID; required with "
        "BOUNCE_DOMAIN, and to be set wherever mailed bounces are received (without it a returned Message-ID "
        "is matched unsigned).",
    )
    bounce_max_bytes: int = Field(
        2_000_000, ge=10_000, description="Largest bounce message `email-service bounces` and the poller read."
    )
    soft_bounce_limit: int = Field(
        3,
        ge=0,
        description="Soft bounces of one address within SOFT_BOUNCE_WINDOW, about one account's jobs, that put it on "
        "that account's suppression list; 0 = never.",
    )
    soft_bounce_window: float = Field(7 * 86400, gt=0, description="Seconds over which soft bounces are counted.")
    bounce_imap_url: SecretStr = Field(
        SecretStr(""),
        description="Mailbox `email-service bounce-mailbox` polls, imaps://user:password@host[:port]/MAILBOX "
        "(imap:// for a server on loopback only); empty = none.",
    )
    bounce_imap_interval: float = Field(60, gt=0, description="Seconds between two polls of BOUNCE_IMAP_URL.")
    ses_topic_arns: str = Field(
        "", description="Comma-separated SNS topic ARNs whose SES events /bounces/ses accepts; empty = endpoint off."
    )
    sendgrid_webhook_public_key: str = Field(
        "", description="Verification key of SendGrid's signed Event Webhook; empty = /bounces/sendgrid off."
    )
    mailgun_webhook_signing_key: SecretStr = Field(
        SecretStr(""), description="Mailgun's HTTP webhook signing key; empty = /bounces/mailgun off."
    )
    postmark_webhook_user: str = Field("", description="User of the basic auth in Postmark's webhook URL.")
    postmark_webhook_password: SecretStr = Field(
        SecretStr(""), description="Password of that basic auth; empty = /bounces/postmark off."
    )
    metrics_host: str = Field(
        "127.0.0.1", description="Address the metrics endpoints of `worker` and `scheduler` listen on."
    )
    worker_metrics_port: int = Field(
        0, ge=0, le=65535, description="Port of the metrics endpoint of `email-service worker`; 0 = none."
    )
    scheduler_metrics_port: int = Field(
        0, ge=0, le=65535, description="Port of the metrics endpoint of `email-service scheduler`; 0 = none."
    )
    batch_size: int = Field(100, ge=1, le=10_000, description="Most recipients one claim of a worker thread takes.")
    lease_seconds: int = Field(
        30,
        ge=2,
        description="How long claimed recipients stay their worker's without a renewal; the worker renews them "
        "every quarter of this while it sends, so a dead worker's recipients go to another within it.",
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("mail_tls_ca_file", "dkim_private_key_file", "dkim_second_private_key_file", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value  # an empty variable would otherwise be Path(".")

    @model_validator(mode="after")
    def _check_and_complete(self) -> Settings:
        if self.mail_use_tls and self.mail_use_ssl:
            raise ValueError("MAIL_USE_TLS (STARTTLS) and MAIL_USE_SSL (implicit TLS) exclude each other")
        try:
            parse_mailbox(self.mail_default_sender)
        except InvalidAddress as exc:
            raise ValueError(f"MAIL_DEFAULT_SENDER {self.mail_default_sender!r}: {exc}") from None
        if self.webhook_url and not self.webhook_secret.get_secret_value():
            raise ValueError("WEBHOOK_URL needs WEBHOOK_SECRET: webhook events are always signed")
        if self.webhook_url and (reason := url_refusal(self.webhook_url, self.webhook_allowed_networks)):
            raise ValueError(f"WEBHOOK_URL is refused: {reason} (WEBHOOK_ALLOWED_NETWORKS can allow a network)")
        if self.lease_seconds >= self.broker_visibility_timeout:
            raise ValueError("LEASE_SECONDS must be shorter than BROKER_VISIBILITY_TIMEOUT")
        self._check_dkim()
        self._check_bounces()
        if 0 < len(self.dashboard_secret.get_secret_value()) < 32:
            raise ValueError("DASHBOARD_SECRET must have 32 characters or more: it signs the login cookies")
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.data_dir / 'email_service.db').resolve()}"
        return self

    def _check_dkim(self) -> None:
        """The three DKIM settings go together and name DNS labels, and so do the second key's two beside
        them; the keys themselves are loaded at start-up (bootstrap), so that reading the settings needs
        no cryptography."""
        given = {
            "DKIM_DOMAIN": self.dkim_domain,
            "DKIM_SELECTOR": self.dkim_selector,
            "DKIM_PRIVATE_KEY_FILE": self.dkim_private_key_file,
        }
        missing = [name for name, value in given.items() if not value]
        second = bool(self.dkim_second_selector or self.dkim_second_private_key_file)
        if len(missing) == len(given) and not second:
            return
        if missing:
            together = "DKIM_DOMAIN, DKIM_SELECTOR and DKIM_PRIVATE_KEY_FILE go together"
            raise ValueError(f"{together}: set all three or none; missing: {', '.join(missing)}")
        labels = [("DKIM_DOMAIN", self.dkim_domain), ("DKIM_SELECTOR", self.dkim_selector)]
        if second:
            if not (self.dkim_second_selector and self.dkim_second_private_key_file):
                raise ValueError("DKIM_SECOND_SELECTOR and DKIM_SECOND_PRIVATE_KEY_FILE go together: set both or none")
            if self.dkim_second_selector.lower() == self.dkim_selector.lower():
                raise ValueError("DKIM_SECOND_SELECTOR must differ from DKIM_SELECTOR: each key has its own DNS record")
            labels.append(("DKIM_SECOND_SELECTOR", self.dkim_second_selector))
        for name, value in labels:
            if not DNS_NAME.fullmatch(value):
                raise ValueError(
                    f"{name} {value!r} is not a DNS name (ASCII letters, digits, hyphens, dots; IDNA form)"
                )

    def _check_bounces(self) -> None:
        short_secret = len(self.bounce_secret.get_secret_value()) < 16
        if self.postmark_webhook_password.get_secret_value() and short_secret:
            raise ValueError(
                "POSTMARK_WEBHOOK_PASSWORD needs BOUNCE_SECRET (16 characters or more): "
                "Postmark's events name the recipient by a signed token"
            )
        if not self.bounce_domain:
            return
        if not DNS_NAME.fullmatch(self.bounce_domain):
            raise ValueError(f"BOUNCE_DOMAIN {self.bounce_domain!r} is not a DNS name (ASCII, IDNA form)")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,14}", self.bounce_local_part):
            raise ValueError(f"BOUNCE_LOCAL_PART {self.bounce_local_part!r}: 1 to 15 letters, digits, . _ or -")
        if short_secret:
            raise ValueError("BOUNCE_DOMAIN needs BOUNCE_SECRET, of at least 16 characters: the tokens are signed")

    @property
    def allowed_recipient_domains(self) -> frozenset[str]:
        return frozenset(d.strip().lower() for d in self.recipient_domains.split(",") if d.strip())

    @property
    def rate_limit_redis(self) -> str | None:
        """The Redis URL of the shared rate buckets, if any."""
        if self.rate_limit_redis_url:
            return self.rate_limit_redis_url
        return self.celery_broker_url if is_redis_url(self.celery_broker_url) else None

    @property
    def broker_folder(self) -> Path:
        """Where the filesystem broker keeps its messages."""
        return (self.data_dir / "broker").resolve()
