"""Behind a reverse proxy: which forwarded headers the API trusts (PROXY_HOPS), and the nginx file agrees
with the settings. The deployment test runs the same through nginx and gunicorn."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from flask import jsonify, request

from email_service.app import create_app
from email_service.config import Settings
from tests.support import REPOSITORY

NGINX_FILE = REPOSITORY / "deploy" / "nginx" / "email-service.conf"
FORWARDED = {
    "X-Forwarded-For": "198.51.100.7, 203.0.113.5",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "mail.example.org",
    "X-Forwarded-Port": "8443",
    "X-Forwarded-Prefix": "/mail",
}


def _seen(tmp_path: Path, hops: int) -> dict[str, str]:
    """What a view sees of a request from 10.0.0.2 carrying FORWARDED, with PROXY_HOPS=``hops``."""
    app = create_app(Settings(data_dir=tmp_path, auth_disabled=True, proxy_hops=hops))

    @app.get("/probe", doc_ui=False)
    def probe():  # every view reads the request as this one does
        return jsonify(
            remote_addr=request.remote_addr, scheme=request.scheme, host=request.host, root=request.root_path
        )

    answer = app.test_client().get(
        "/probe", headers={**FORWARDED, "Host": "api.internal"}, environ_base={"REMOTE_ADDR": "10.0.0.2"}
    )
    assert answer.status_code == 200
    return answer.get_json()


def test_by_default_no_forwarded_header_is_trusted(tmp_path: Path):
    assert _seen(tmp_path, 0) == {"remote_addr": "10.0.0.2", "scheme": "http", "host": "api.internal", "root": ""}


def test_one_hop_trusts_what_the_last_proxy_wrote_and_nothing_the_client_did(tmp_path: Path):
    # 198.51.100.7 is what the client claimed; 203.0.113.5 is what the proxy appended. Port and prefix
    # are never trusted: the nginx file does not set them, so they would be the client's.
    assert _seen(tmp_path, 1) == {
        "remote_addr": "203.0.113.5",
        "scheme": "https",
        "host": "mail.example.org",
        "root": "",
    }


def test_two_hops_read_one_entry_further(tmp_path: Path):
    assert _seen(tmp_path, 2)["remote_addr"] == "198.51.100.7"


def test_a_negative_hop_count_is_refused():
    with pytest.raises(ValueError, match="proxy_hops"):
        Settings(proxy_hops=-1)


def test_the_nginx_body_limit_is_the_api_default():
    limit = re.search(r"^\s*client_max_body_size (\d+);", NGINX_FILE.read_text(), re.MULTILINE)
    assert limit is not None
    assert int(limit.group(1)) == Settings.model_fields["max_request_bytes"].default
