"""`email-service dev`: its links name the address it serves, and it answers only its own host names."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask.testing import FlaskClient

from email_service.app import create_api
from email_service.config import Settings
from email_service.message.unsubscribe import url_for
from email_service.runtime.dev_server import dev_environment
from email_service.services import build_services
from email_service.storage.migrate import upgrade


@pytest.fixture(autouse=True)
def _no_outer_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PUBLIC_URL", "ALLOWED_HOSTS"):
        monkeypatch.delenv(name, raising=False)


def _dev_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host: str, port: int) -> Settings:
    for name, value in dev_environment(tmp_path, host=host, port=port, smtp_port=1025).items():
        monkeypatch.setenv(name, value)
    return Settings()


@pytest.mark.parametrize(
    ("host", "port", "base"),
    [
        ("127.0.0.1", 8123, "http://127.0.0.1:8123"),
        ("localhost", 9000, "http://localhost:9000"),
        ("::1", 8123, "http://[::1]:8123"),
        ("0.0.0.0", 8124, "http://localhost:8124"),
    ],
)
def test_dev_links_point_at_the_port_and_host_it_serves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host: str, port: int, base: str
):
    settings = _dev_settings(tmp_path, monkeypatch, host, port)
    assert settings.public_url == base
    assert url_for(settings.public_url, "j", 0, "k").startswith(f"{base}/unsubscribe/j.0.")


def test_a_public_url_of_the_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PUBLIC_URL", "https://mail.example.org")
    assert dev_environment(tmp_path, host="127.0.0.1", port=8123, smtp_port=1025)["PUBLIC_URL"] == (
        "https://mail.example.org"
    )


@pytest.fixture
def dev_client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FlaskClient:
    settings = _dev_settings(tmp_path, monkeypatch, "192.0.2.7", 8123)
    upgrade(settings.database_url)
    return create_api(build_services(settings)).test_client()


ALLOWED = [
    "localhost", "LOCALHOST", "LocalHost:8123", "localhost.", "localhost.:8123",
    "127.0.0.1", "127.0.0.1:8123", "[::1]", "[::1]:8123", "[0:0:0:0:0:0:0:1]", "[0::1]:80",
    "192.0.2.7", "192.0.2.7:8123",
]  # fmt: skip
REFUSED = [
    "evil.example", "evil.example:8123", "localhost.evil.example", "localhost.evil.example:8123",
    "127.0.0.1.evil.example", "evil.localhost.example", "127.0.0.2", "127.1", "2130706433", "[::2]",
    "[::ffff:127.0.0.1]", "localhost:evil", "localhost:8123:80", "[::1]evil", "", "192.0.2.70", "0.0.0.0",
]  # fmt: skip


@pytest.mark.parametrize("host", ALLOWED)
def test_dev_answers_its_own_host_names(dev_client: FlaskClient, host: str):
    assert dev_client.get("/healthz", headers={"Host": host}).status_code == 200


@pytest.mark.parametrize("host", REFUSED)
@pytest.mark.parametrize("path", ["/healthz", "/api/email/", "/dashboard/"])
def test_dev_refuses_other_host_names(dev_client: FlaskClient, host: str, path: str):
    answer = dev_client.get(path, headers={"Host": host})
    assert answer.status_code == 400
    assert b"is not one of ALLOWED_HOSTS" in answer.data  # the API's JSON envelope, or the dashboard's page


def test_without_allowed_hosts_any_host_is_answered(tmp_path: Path):
    settings = Settings(data_dir=tmp_path, auth_disabled=True)
    upgrade(settings.database_url)
    client = create_api(build_services(settings)).test_client()
    assert client.get("/healthz", headers={"Host": "mail.example.org"}).status_code == 200
