"""Settings come from the tutorial's environment variable names."""

from __future__ import annotations

from pathlib import Path

import pytest

from email_service.config import Settings


def test_tutorial_names_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    env = {
        "MAIL_SERVER": "relay.example.org",
        "MAIL_PORT": "2525",
        "MAIL_USE_TLS": "True",
        "MAIL_USE_SSL": "False",
        "MAIL_USERNAME": "user",
        "MAIL_PASSWORD": "hunter2-canary",
        "MAIL_DEFAULT_SENDER": "News <news@example.org>",
        "MAIL_MAX_EMAILS": "50",
        "MAIL_SUPPRESS_SEND": "true",
        "CELERY_BROKER_URL": "redis://localhost:6379/3",
        "CELERY_RESULT_BACKEND": "redis://localhost/0",
        "LOG_PATH": str(tmp_path / "x.log"),
        "LOG_SIZE": "1000",
        "LOG_COUNT": "3",
        "LOG_ENCODING": "latin-1",
        "LOG_LEVEL": "DEBUG",
        "DATABASE_URL": "sqlite:///x.db",
        "TEMPLATES_DIR": str(tmp_path),
        "MAX_RECIPIENTS": "10",
        "BATCH_SIZE": "25",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert (settings.mail_server, settings.mail_port, settings.mail_use_tls, settings.mail_use_ssl) == (
        "relay.example.org",
        2525,
        True,
        False,
    )
    assert settings.mail_password.get_secret_value() == "hunter2-canary" and "hunter2" not in repr(settings)
    assert settings.mail_max_emails == 50 and settings.mail_suppress_send
    assert settings.celery_broker_url == "redis://localhost:6379/3"
    assert (settings.log_size, settings.log_count, settings.log_encoding, settings.log_level) == (
        1000,
        3,
        "latin-1",
        "DEBUG",
    )
    assert (settings.max_recipients, settings.batch_size, settings.templates_dir) == (10, 25, tmp_path)
    assert settings.database_url == "sqlite:///x.db"


def test_embedded_default_needs_no_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    settings = Settings(data_dir=tmp_path)
    assert settings.database_url == f"sqlite:///{tmp_path / 'email_service.db'}"
    assert settings.celery_broker_url == "filesystem://"


def test_a_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MAIL_PORT", "not-a-port")
    with pytest.raises(ValueError, match="mail_port"):
        Settings()


def test_a_lease_longer_than_the_broker_visibility_timeout_is_refused_at_start_up():
    with pytest.raises(ValueError, match="BROKER_VISIBILITY_TIMEOUT"):
        Settings(lease_seconds=4000, broker_visibility_timeout=3600)
