"""Requests on a caller's behalf go to public unicast addresses only: the URL at intake (422), the addresses its
host resolves to at connect time (the webhook event fails for good), never a redirect. Nothing here leaves
the machine: refused destinations are refused before connecting, with the resolver and connector replaced."""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from pathlib import Path
from typing import Any

import httpcore
import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from email_service.api.bounces import confirm_sns_subscription
from email_service.app import create_api
from email_service.bounces.providers import fetch_sns_certificate
from email_service.config import Settings
from email_service.errors import DestinationRefused
from email_service.outbound.destinations import IPAddress, address_refusal, parse_networks, url_refusal
from email_service.outbound.transport import GuardedBackend, GuardedTransport, http_client
from email_service.services import build_services
from email_service.storage.migrate import upgrade
from email_service.storage.models import Job, WebhookEvent
from email_service.webhooks.sender import post_event
from tests.support.inline import Recipient, inline_services, run
from tests.support.smtp_sink import SMTPSink

LOOPBACK = parse_networks("127.0.0.0/8,::1/128")
EXAMPLES = settings(max_examples=150, deadline=None)

# What must never be reached unless allowed (IANA's special-purpose registries): the test's own list.
NOT_PUBLIC_V4 = [
    ip_network(n)
    for n in (
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
        "192.0.0.0/24", "192.0.2.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24",
        "224.0.0.0/4", "240.0.0.0/4",
    )
]  # fmt: skip
NOT_PUBLIC_V6 = [
    ip_network(n)
    for n in (
        "::1/128", "::/128", "fe80::/10", "fc00::/7", "fec0::/10", "ff00::/8", "2001:db8::/32", "100::/64",
        "2001::/32", "64:ff9b:1::/48",
    )
]  # fmt: skip
PUBLIC = [ip_network(n) for n in ("8.8.8.0/24", "1.1.1.0/24", "93.184.216.0/24", "151.101.0.0/16")]
PUBLIC_V6 = [ip_network(n) for n in ("2606:4700::/32", "2a00:1450::/32", "2001:4860::/32")]


def _in(network: IPv4Network | IPv6Network) -> st.SearchStrategy[IPAddress]:
    first, last = int(network.network_address), int(network.broadcast_address)
    return st.integers(first, last).map(ip_address)


not_public_v4 = st.sampled_from(NOT_PUBLIC_V4).flatmap(_in)
not_public_v6 = st.sampled_from(NOT_PUBLIC_V6).flatmap(_in)


@st.composite
def ipv4_spellings(draw: st.DrawFn, address: IPv4Address) -> str:
    """``address`` as one of the many hosts that a URL parser or resolver reads as it."""
    n = int(address)
    a, b, c, d = address.packed
    spellings = [
        str(address),
        str(n),
        f"0x{n:x}",
        f"0X{n:08X}",
        f"0{n:o}",
        f"{a}.{b}.{(c << 8) | d}",
        f"{a}.{(b << 16) | (c << 8) | d}",
        f"0{a:o}.0{b:o}.0{c:o}.0{d:o}",
        f"0x{a:x}.0x{b:x}.0x{c:x}.0x{d:x}",
        f"0x{a:02x}.{b}.0{c:o}.{d}",
        f"[::ffff:{address}]",
        f"[::ffff:{n >> 16:x}:{n & 0xFFFF:x}]",
        f"[0:0:0:0:0:FFFF:{n >> 16:04X}:{n & 0xFFFF:04X}]",
        f"[64:ff9b::{address}]",
        f"[2002:{n >> 16:x}:{n & 0xFFFF:x}:{draw(st.integers(0, 0xFFFF)):x}::1]",
        f"[::{address}]",
    ]
    spelling = draw(st.sampled_from(spellings))
    return spelling + "." if draw(st.booleans()) and not spelling.startswith("[") else spelling


@st.composite
def ipv6_spellings(draw: st.DrawFn, address: IPv6Address) -> str:
    spelling = draw(st.sampled_from([address.compressed, address.exploded, address.exploded.upper()]))
    return f"[{spelling}]"


@st.composite
def urls(draw: st.DrawFn, host: str) -> str:
    scheme = draw(st.sampled_from(["http", "https", "HTTP"]))
    port = draw(st.sampled_from(["", ":80", ":5432", ":6379", ":8080"]))
    return f"{scheme}://{host}{port}{draw(st.sampled_from(['', '/', '/hooks?a=1']))}"


@EXAMPLES
@given(st.one_of(not_public_v4.flatmap(ipv4_spellings), not_public_v6.flatmap(ipv6_spellings)).flatmap(urls))
def test_urls_naming_a_non_public_address_in_any_spelling_are_refused(url: str):
    assert url_refusal(url) is not None, url


@EXAMPLES
@given(not_public_v4.flatmap(ipv4_spellings).filter(lambda host: not host.startswith("[")))
def test_only_four_decimal_numbers_name_an_allowed_network(host: str):
    """An allowed network does not let the odd spellings in: 2130706433 is 127.0.0.1 to one resolver only."""
    refused = url_refusal(f"http://{host}/hooks", parse_networks("0.0.0.0/0")) is not None
    assert refused != _is_dotted_quad(host.removesuffix("."))


def _is_dotted_quad(host: str) -> bool:
    try:
        return str(IPv4Address(host)) == host
    except ValueError:
        return False


@EXAMPLES
@given(st.one_of(st.sampled_from(PUBLIC).flatmap(_in), st.sampled_from(PUBLIC_V6).flatmap(_in)))
def test_public_addresses_are_accepted(address: IPAddress):
    host = f"[{address}]" if address.version == 6 else str(address)
    assert url_refusal(f"https://{host}/hooks") is None
    assert address_refusal(address) is None


@EXAMPLES
@given(st.sampled_from(PUBLIC).flatmap(_in))
def test_public_ipv4_inside_ipv6_is_accepted(address: IPv4Address):
    for host in (f"[::ffff:{address}]", f"[64:ff9b::{address}]"):
        assert url_refusal(f"https://{host}/hooks") is None


@EXAMPLES
@given(
    st.sampled_from(
        ["localhost", "metadata", "metadata.google.internal", "instance-data", "db.internal", "printer.local",
         "nas.home.arpa", "router.lan", "redis", "postgres", "x.localhost"]
    ),
    st.sampled_from(["", "api.", "a-b."]),
    st.booleans(),
    st.booleans(),
)  # fmt: skip
def test_internal_names_are_refused(name: str, prefix: str, upper: bool, trailing_dot: bool):
    host = prefix + name if "." in name or name == "localhost" else name
    host = (host.upper() if upper else host) + ("." if trailing_dot else "")
    assert url_refusal(f"http://{host}/hooks") is not None, host


@pytest.mark.parametrize(
    "url",
    [
        "ftp://hooks.example.com/x",
        "file:///etc/passwd",
        "gopher://hooks.example.com:70/_x",
        "https://user@hooks.example.com/x",
        "https://user:secret@hooks.example.com/x",
        "https://:secret@hooks.example.com/x",
        "http://%31%32%37.0.0.1/x",
        "http://[fe80::1%25eth0]/x",
        "http:///x",
    ],
)
def test_other_schemes_credentials_and_odd_hosts_are_refused(url: str):
    assert url_refusal(url, LOOPBACK) is not None


def test_allowed_networks_let_their_addresses_in_and_no_others():
    allowed = parse_networks("127.0.0.0/8, ::1/128")
    assert url_refusal("http://127.0.0.1:8080/hooks", allowed) is None
    assert url_refusal("http://[::1]:8080/hooks", allowed) is None
    assert url_refusal("http://localhost:8080/hooks", allowed) is None
    assert url_refusal("http://10.0.0.1/hooks", allowed) == "10.0.0.1 is a private address"
    assert url_refusal("http://169.254.169.254/", allowed) is not None
    metadata = "metadata.google.internal"
    assert url_refusal(f"http://{metadata}/", allowed) == f"{metadata} is a cloud metadata service"


@pytest.mark.parametrize("value", ["10.0.0.1/8", "localhost", "10.0.0.0/33"])
def test_allowed_networks_that_are_not_networks_are_refused_by_name(value: str):
    with pytest.raises(ValueError, match=rf"(?is)webhook_allowed_networks.*'{re.escape(value)}' is not a network"):
        Settings(webhook_allowed_networks=f"::1/128,{value}")


def test_webhook_url_setting_is_checked_at_start():
    with pytest.raises(ValueError, match=r"WEBHOOK_URL is refused: 127\.0\.0\.1 is a loopback address"):
        Settings(webhook_url="http://127.0.0.1:6379/", webhook_secret="k")
    allowed = Settings(webhook_url="http://127.0.0.1:8080/", webhook_secret="k", webhook_allowed_networks="127.0.0.0/8")
    assert allowed.webhook_allowed_networks == (ip_network("127.0.0.0/8"),)


# -- connect time: the resolver and the connector are replaced


class Resolver:
    def __init__(self, *answers: str) -> None:
        self.answers = [ip_address(a) for a in answers]
        self.asked: list[str] = []

    def __call__(self, host: str, port: int) -> list[IPAddress]:
        self.asked.append(host)
        return self.answers


class Connector(httpcore.NetworkBackend):
    """Connects for real (to loopback) and records where; ``refuse`` makes any connection a test failure."""

    def __init__(self, *, refuse: bool = False) -> None:
        self.refuse = refuse
        self.hosts: list[str] = []

    def connect_tcp(self, host: str, port: int, *args: Any, **kwargs: Any) -> httpcore.NetworkStream:
        assert not self.refuse, f"connected to {host}"
        self.hosts.append(host)
        return httpcore.SyncBackend().connect_tcp(host, port, *args, **kwargs)


def _client(resolver: Resolver, connector: Connector, allowed: tuple[Any, ...] = ()) -> httpx.Client:
    backend = GuardedBackend(allowed, resolve=resolver, connector=connector)
    return http_client(2.0, transport=GuardedTransport(allowed, backend=backend))


@EXAMPLES
@given(st.one_of(not_public_v4, not_public_v6, not_public_v4.map(lambda a: IPv6Address(f"::ffff:{a}"))))
def test_a_name_resolving_to_a_non_public_address_is_refused_before_connecting(address: IPAddress):
    connector = Connector(refuse=True)
    backend = GuardedBackend(resolve=Resolver("93.184.216.34", str(address)), connector=connector)
    with pytest.raises(DestinationRefused, match=re.escape(f"hooks.example.com: {address}")):
        backend.connect_tcp("hooks.example.com", 443, timeout=1.0)
    assert connector.hosts == []


@pytest.fixture
def receiver() -> Iterator[tuple[int, list[dict[str, str]]]]:
    """A loopback HTTP server recording each request's headers; /redirect answers 302 to /elsewhere."""
    seen: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
            self.send_response(302 if self.path == "/redirect" else 200)
            self.send_header("Location", f"http://127.0.0.1:{self.server.server_address[1]}/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_POST = do_GET

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield server.server_address[1], seen
    server.shutdown()
    server.server_close()


def test_the_checked_address_is_the_one_connected_to_and_the_host_is_kept(receiver: tuple[int, list]):
    port, seen = receiver
    resolver, connector = Resolver("127.0.0.1"), Connector()
    with _client(resolver, connector, LOOPBACK) as client:
        assert client.get(f"http://hooks.example.com:{port}/ok").status_code == 200
    # One lookup, and the connection to its checked answer: no second lookup could answer something else.
    assert resolver.asked == ["hooks.example.com"] and connector.hosts == ["127.0.0.1"]
    assert seen[0]["host"] == f"hooks.example.com:{port}"


def test_redirects_are_not_followed(receiver: tuple[int, list]):
    port, seen = receiver
    with http_client(2.0, LOOPBACK) as client:
        answer = client.get(f"http://127.0.0.1:{port}/redirect")
    assert answer.status_code == 302 and [request["path"] for request in seen] == ["/redirect"]


def test_without_an_allowed_network_loopback_is_refused_at_once(receiver: tuple[int, list]):
    port, seen = receiver
    with http_client(2.0) as client, pytest.raises(DestinationRefused, match=r"127\.0\.0\.1 is a loopback address"):
        client.get(f"http://127.0.0.1:{port}/ok")
    assert seen == []


def test_a_refused_destination_is_a_final_failed_attempt():
    with _client(Resolver("10.1.2.3"), Connector(refuse=True)) as client:
        attempt = post_event(
            client,
            "https://hooks.example.com/x",
            b"{}",
            secrets=["s"],
            event_type="job.completed",
            delivery_id="1",
            now=1,
        )
    assert (attempt.delivered, attempt.status_code, attempt.final) == (False, None, True)
    assert attempt.error == "destination refused: hooks.example.com: 10.1.2.3 is a private address"


@pytest.mark.parametrize("fetch", [fetch_sns_certificate, confirm_sns_subscription])
def test_sns_urls_go_through_the_same_guard(fetch: Any):
    with pytest.raises(DestinationRefused):
        fetch("http://127.0.0.1:9/SimpleNotificationService.pem")


def test_a_webhook_event_to_a_refused_destination_fails_at_once_and_for_good(
    tmp_path: Path, sink: SMTPSink, monkeypatch: pytest.MonkeyPatch
):
    real_getaddrinfo = socket.getaddrinfo

    def rebinding(host: Any, *args: Any, **kwargs: Any) -> Any:
        # The name passed intake (a public-looking name); the lookup at delivery answers a private address.
        return real_getaddrinfo("169.254.169.254" if host == "hooks.example.com" else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    services = inline_services(tmp_path, mail_port=sink.port, webhook_secret="w" * 32)
    run(services, [Recipient("will@example.com")], callback_url="https://hooks.example.com/x")
    with services.sessions() as session:
        [event] = session.scalars(select(WebhookEvent))
    assert (event.type, event.status, event.attempts, event.next_attempt_at) == ("job.completed", "failed", 1, None)
    assert event.last_error == (
        "destination refused: hooks.example.com: 169.254.169.254 is a link-local address (where cloud metadata answers)"
    )


# -- intake


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:5432/",
        "http://[::1]/",
        "http://0.0.0.0/",
        "http://2130706433/",
        "http://0x7f000001/",
        "http://127.1/",
        "http://0177.0.0.1/",
        "http://localhost/",
        "http://[::ffff:127.0.0.1]/",
        "http://169.254.169.254/latest/meta-data/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://100.64.0.1/",
        "http://[64:ff9b::a9fe:a9fe]/",
        "http://10.0.0.1./",
    ],
)
def test_a_job_with_a_non_public_callback_url_is_refused_and_nothing_stored(tmp_path: Path, url: str):
    configured = Settings(data_dir=tmp_path, auth_disabled=True, webhook_secret="k")
    upgrade(configured.database_url)
    services = build_services(configured)
    answer = (
        create_api(services)
        .test_client()
        .post("/api/email/", json={"recipients": ["a@example.com"], "subject": "s", "callback_url": url})
    )
    assert answer.status_code == 422
    [detail] = answer.get_json()["details"]
    assert detail["field"] == "callback_url" and detail["reason"]
    with services.sessions() as session:
        assert session.scalars(select(Job)).all() == []
