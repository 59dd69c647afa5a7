"""The HTTP client of requests made on a caller's behalf (webhooks, SNS confirmations): it connects only to
addresses the destination policy allows, checked after the lookup, and follows no redirect."""

from __future__ import annotations

import socket
import typing
from collections.abc import Callable, Iterable
from http.cookiejar import CookieJar, DefaultCookiePolicy
from ipaddress import ip_address

import httpcore
import httpx

from email_service.errors import DestinationRefused
from email_service.outbound.destinations import IPAddress, IPNetwork, address_refusal, url_refusal

Resolve = Callable[[str, int], list[IPAddress]]


def resolve_host(host: str, port: int) -> list[IPAddress]:
    """The addresses of ``host``, each once, in the resolver's order."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise httpcore.ConnectError(f"{host}: {exc}") from exc
    return list(dict.fromkeys(ip_address(sockaddr[0]) for *_, sockaddr in found))


class GuardedBackend(httpcore.NetworkBackend):
    """Resolves the host once, refuses it if any of its addresses is not allowed, then connects to a checked
    address itself: no second lookup can lead elsewhere (DNS rebinding). TLS still names the host: httpcore
    gives the URL's host as the server name, and the Host header is the URL's."""

    def __init__(
        self,
        allowed: Iterable[IPNetwork] = (),
        *,
        resolve: Resolve = resolve_host,
        connector: httpcore.NetworkBackend | None = None,
    ) -> None:
        self._allowed = tuple(allowed)
        self._resolve = resolve
        self._connector = connector or httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = self._resolve(host, port)
        # Every address is checked, not only the first: a name answering a public and a private address would
        # otherwise reach the private one whenever the public one does not answer.
        for address in addresses:
            if reason := address_refusal(address, self._allowed):
                raise DestinationRefused(reason if host == str(address) else f"{host}: {reason}")
        error: Exception = httpcore.ConnectError(f"{host}: no address")
        for address in addresses:
            try:
                return self._connector.connect_tcp(str(address), port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:
                error = exc
        raise error


class GuardedTransport(httpx.HTTPTransport):
    """httpx's transport with the URL checked before anything else and connections made by GuardedBackend."""

    def __init__(self, allowed: Iterable[IPNetwork] = (), *, backend: GuardedBackend | None = None) -> None:
        super().__init__(trust_env=False)
        self._allowed = tuple(allowed)
        # httpx takes no network backend: its connection pool is made again around the guarded one.
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_keepalive_connections=10,
            keepalive_expiry=5.0,
            network_backend=backend or GuardedBackend(self._allowed),
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if reason := url_refusal(str(request.url), self._allowed):
            raise DestinationRefused(reason)
        return super().handle_request(request)


def http_client(
    timeout: float, allowed: Iterable[IPNetwork] = (), *, transport: GuardedTransport | None = None
) -> httpx.Client:
    """A client for callers' destinations: ``timeout`` seconds for each phase, public addresses (or ``allowed``)
    only, no redirects, no cookies, no proxies.

    A redirect or a proxy from our environment could send the request elsewhere, and a cookie one receiver sets
    must not reach the next.
    """
    return httpx.Client(
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
        cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
        transport=transport or GuardedTransport(allowed),
    )
