"""Settings read from the environment, once, by the application factories."""

from __future__ import annotations

from email.utils import parseaddr
from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of the service; the names are the environment variables (case-insensitive).

    The tutorial's names (``MAIL_*``, ``CELERY_*``, ``LOG_*``) keep their meaning. With no
    environment at all the service runs on its embedded default: SQLite and a filesystem
    broker under ``DATA_DIR``, a local SMTP relay on port 1025.
    """

    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    data_dir: Path = Field(Path("var"), description="Folder for the embedded SQLite database, broker and catcher.")
    database_url: str = Field("", description="SQLAlchemy URL; empty means SQLite at DATA_DIR/email_service.db.")

    mail_server: str = Field("localhost", description="SMTP relay host.")
    mail_port: int = Field(1025, ge=1, le=65535, description="SMTP relay port.")
    mail_use_tls: bool = Field(False, description="Upgrade the relay connection with STARTTLS.")
    mail_use_ssl: bool = Field(False, description="Connect to the relay over implicit TLS.")
    mail_username: str = Field("", description="Relay login; empty means no AUTH.")
    mail_password: SecretStr = Field(SecretStr(""), description="Relay password (never logged).")
    mail_default_sender: str = Field("email-service@localhost", description="From address of every message.")
    mail_max_emails: int | None = Field(None, ge=1, description="Messages per SMTP connection before reconnecting.")
    mail_suppress_send: bool = Field(False, description="Log messages instead of sending them.")
    mail_timeout: float = Field(30.0, gt=0, description="Seconds allowed for each SMTP operation.")

    celery_broker_url: str = Field("filesystem://", description="Celery broker; filesystem:// keeps it under DATA_DIR.")
    celery_result_backend: str | None = Field(None, description="Celery result backend; unused by the service.")
    celery_queue: str = Field("email_service", description="Name of the queue the workers consume.")
    celery_broker_key_prefix: str = Field("", description="Prefix of every Redis key the broker writes.")
    worker_concurrency: int | None = Field(None, ge=1, description="Worker processes; empty means one per core.")

    log_path: Path | None = Field(None, description="Rotating log file; empty means stderr only.")
    log_size: int = Field(10_000_000, ge=1, description="Bytes per log file before rotation.")
    log_count: int = Field(10, ge=0, description="Rotated log files kept.")
    log_encoding: str = Field("utf-8", description="Encoding of the log file.")
    log_level: str = Field("INFO", description="Minimum level logged.")

    templates_dir: Path | None = Field(None, description="Folder of .eml templates, searched before the built-in ones.")
    max_recipients: int = Field(100_000, ge=1, description="Most recipients one job may have.")
    max_request_bytes: int = Field(25_000_000, ge=1024, description="Largest request body accepted (413 beyond).")
    batch_size: int = Field(100, ge=1, le=10_000, description="Recipients sent by one worker task.")
    lease_seconds: int = Field(600, ge=10, description="How long a worker owns a claimed batch.")

    @model_validator(mode="after")
    def _fill_embedded_database(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.data_dir / 'email_service.db').resolve()}"
        return self

    @property
    def broker_folder(self) -> Path:
        """Where the filesystem broker keeps its messages."""
        return (self.data_dir / "broker").resolve()

    @property
    def sender_domain(self) -> str:
        """Domain used in the Message-IDs the service creates."""
        return parseaddr(self.mail_default_sender)[1].rpartition("@")[2] or "localhost"
