"""The Host names the API answers to (ALLOWED_HOSTS): a page on another site that rebinds its own name to
this machine's address still sends that name, and is refused."""

from __future__ import annotations

import ipaddress
import re

from flask import Flask, request

from email_service.errors import RequestError

_PORT = re.compile(r":[0-9]{1,5}")


def canonical_host(value: str) -> str | None:
    """``value`` (a Host header or a setting's entry) without its port, lower case, without a final dot, an
    IP address in its one written form (IPv6 in brackets); None if it is not a host at all."""
    value = value.strip().lower()
    if value.startswith("["):
        inner, _, port = value[1:].partition("]")
        return _bracketed(inner) if not port or _PORT.fullmatch(port) else None
    if value.count(":") > 1:  # a bare IPv6 address: only a setting writes one so
        return _bracketed(value)
    name, _, port = value.partition(":")
    if port and not _PORT.fullmatch(f":{port}"):
        return None
    name = name.removesuffix(".")
    try:
        return str(ipaddress.IPv4Address(name))
    except ValueError:
        return name or None


def _bracketed(address: str) -> str | None:
    try:
        return f"[{ipaddress.IPv6Address(address).compressed}]"
    except ValueError:
        return None


def install_host_check(app: Flask, allowed_hosts: str) -> None:
    """Refuse with 400, before anything else reads it, a request whose Host is not one of ``allowed_hosts``
    (comma-separated); an empty setting allows any."""
    allowed = {host for entry in allowed_hosts.split(",") if entry.strip() and (host := canonical_host(entry))}
    if not allowed:
        return

    @app.before_request
    def _refuse_other_hosts() -> None:
        given = request.headers.get("Host", "")
        if canonical_host(given) not in allowed:
            raise RequestError(
                "this server does not answer to that host name",
                [{"field": "Host", "reason": f"{given[:100]!r} is not one of ALLOWED_HOSTS"}],
            )
