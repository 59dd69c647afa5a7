"""The deployment files hold together: docker-compose.yml passes `docker-compose config` (no Docker
engine needed) and wires what the service expects; the Dockerfile builds a lean non-root image; the
API's container health check works against a real gunicorn on a unix socket."""

from __future__ import annotations

import os
import shlex
import shutil
import stat
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from email_service.config import Settings
from tests.support import REPOSITORY
from tests.support.stack import ServiceProcess, wait_for

ROOT = REPOSITORY
SOCKET_DIR = "/run/email-service"
APP_SERVICES = ("api", "worker", "scheduler")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """docker-compose.yml as `docker-compose config` resolves it (anchors merged, defaults filled in)."""
    assert shutil.which("docker-compose"), "docker-compose is missing: `make test` installs it"
    result = subprocess.run(
        ["docker-compose", "--file", "docker-compose.yml", "config"],
        cwd=ROOT,
        env={key: value for key, value in os.environ.items() if not key.startswith(("COMPOSE_", "DOCKER_"))},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return config


def _volume_targets(service: dict[str, Any]) -> dict[str, str]:
    """source -> target of the service's volumes, from `config`'s short or long form."""
    found = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume["source"], volume["target"]
        found[source] = target
    return found


def _ports(service: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(host address, published port, container port) of the service, from `config`'s short or long form."""
    found = []
    for port in service.get("ports", []):
        if isinstance(port, str):
            *address, published, target = port.split("/")[0].split(":")
            found.append((address[0] if address else "", int(published), int(target)))
        else:
            found.append((port.get("host_ip", ""), int(port["published"]), int(port["target"])))
    return found


def test_every_service_is_there(compose: dict[str, Any]):
    assert set(compose["services"]) == {"nginx", "api", "worker", "scheduler", "redis", "postgres", "mailpit"}
    assert set(compose["volumes"]) == {"sockets", "redis-data", "postgres-data"}
    for name, service in compose["services"].items():
        assert service["logging"]["options"]["max-size"], f"{name}'s logs must rotate"


def test_nginx_reaches_the_api_through_a_socket_in_a_shared_volume(compose: dict[str, Any]):
    nginx, api = compose["services"]["nginx"], compose["services"]["api"]
    assert _volume_targets(nginx)["sockets"] == _volume_targets(api)["sockets"] == SOCKET_DIR
    command = api["command"]
    assert command[0] == "serve" and command[command.index("--bind") + 1] == f"unix:{SOCKET_DIR}/api.sock"
    conf = str(ROOT / "deploy" / "nginx" / "email-service.conf")
    assert _volume_targets(nginx)[conf] == "/etc/nginx/conf.d/default.conf"
    assert _ports(nginx) == [("", 80, 80)]
    assert nginx["depends_on"]["api"]["condition"] == "service_healthy"
    assert "ports" not in api, "the API is reached through nginx only"
    assert api["environment"]["PROXY_HOPS"] == "1", "the API believes nginx's forwarded headers"


def test_workers_scale_and_every_app_service_waits_for_its_servers(compose: dict[str, Any]):
    services = compose["services"]
    worker = services["worker"]
    assert "container_name" not in worker and "ports" not in worker
    assert worker["command"] == ["worker"]
    assert worker["cpu_shares"] < 1024, "on a shared host the API's callers come before sending"
    assert services["scheduler"]["command"] == ["scheduler"]
    for name in APP_SERVICES:
        depends = services[name]["depends_on"]
        assert depends["postgres"]["condition"] == depends["redis"]["condition"] == "service_healthy"
        assert services[name]["image"] == "email-service:latest" and services[name]["build"]["context"] == str(ROOT)
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    # Room for several worker containers' connection pools (SMTP_CONCURRENCY + 2 per process).
    assert "max_connections=300" in services["postgres"]["command"]
    assert "ping" in services["redis"]["healthcheck"]["test"]


def test_redis_keeps_every_task(compose: dict[str, Any]):
    redis = compose["services"]["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert _volume_targets(redis)["redis-data"] == "/data"


def test_app_services_set_only_real_settings_and_send_to_mailpit(compose: dict[str, Any]):
    fields = {name.upper() for name in Settings.model_fields}
    for name in APP_SERVICES:
        environment = compose["services"][name]["environment"]
        assert set(environment) - fields == set(), f"{name} sets variables the service does not read"
        settings = Settings(**{key.lower(): value for key, value in environment.items()})  # valid values too
        assert settings.mail_server == "mailpit" and settings.mail_port == 1025
        assert settings.celery_broker_url == "redis://redis:6379/0"
        assert settings.database_url.startswith("postgresql+psycopg://email_service:")
        assert settings.database_url.endswith("@postgres:5432/email_service")
    mailpit = compose["services"]["mailpit"]
    assert mailpit["image"].startswith("axllent/mailpit")
    assert _ports(mailpit) == [("127.0.0.1", 8025, 8025)], "the catcher's UI on this host only"


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_the_image_is_multi_stage_non_root_and_caches_its_dependencies():
    instructions = _dockerfile()
    stages = [args for op, args in instructions if op == "FROM"]
    assert stages == ["python:3.11-slim AS builder", "python:3.11-slim"]
    final = instructions[max(i for i, (op, _) in enumerate(instructions) if op == "FROM") :]
    users = [args for op, args in final if op == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert ("ENTRYPOINT", '["email-service"]') in final
    cmd = next(args for op, args in final if op == "CMD")
    assert yaml.safe_load(cmd)[0] == "serve"
    copies = [args for op, args in instructions if op == "COPY"]
    assert copies.index("pyproject.toml ./") < copies.index("src ./src"), "dependencies before the source"
    assert not any("[dev]" in args for _, args in instructions)
    assert "/healthz" in next(args for op, args in final if op == "HEALTHCHECK")
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "var", "tests"} <= set(ignored)


def test_the_image_installs_exactly_the_projects_dependencies(tmp_path: Path):
    """The builder's requirements come from pyproject.toml: run its own command on a copy."""
    run = next(args for op, args in _dockerfile() if op == "RUN" and "tomllib" in args)
    command = run.split(">", 1)[0].strip()
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    result = subprocess.run(shlex.split(command), cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert result.stdout.split() == project["dependencies"]


def test_the_api_health_check_answers_through_the_unix_socket(compose: dict[str, Any], tmp_path: Path):
    check = compose["services"]["api"]["healthcheck"]["test"]
    assert check[:3] == ["CMD", "python", "-c"]
    socket_path = tmp_path / "api.sock"
    env = {"DATA_DIR": str(tmp_path), "AUTH_DISABLED": "true", "CELERY_BROKER_URL": "memory://"}
    api = ServiceProcess(["serve", "--bind", f"unix:{socket_path}", "--workers", "1"], env, tmp_path / "api.log")
    script = check[3].replace(f"{SOCKET_DIR}/api.sock", str(socket_path))

    def healthy() -> bool:
        return subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=30).returncode == 0

    try:
        wait_for(healthy, timeout=60)
        # nginx runs as another user: it can connect only to a socket everyone may write to.
        assert socket_path.stat().st_mode & stat.S_IWOTH
    finally:
        api.stop()
    assert not healthy(), "the check fails once the API is gone"
