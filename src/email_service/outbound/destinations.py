"""Which hosts and addresses the service may send HTTP requests to on a caller's behalf: public unicast
addresses only, unless the operator allows a network. One policy for the URL at intake and the
address at connect time."""

from __future__ import annotations

import re
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network

import httpx

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

# The special-purpose ranges (IANA's registries), most specific first: the first that holds an address names it.
_REFUSED: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ip_network(network), kind)
    for network, kind in (
        ("0.0.0.0/8", "an unspecified address"),
        ("10.0.0.0/8", "a private address"),
        ("100.64.0.0/10", "a shared (CGNAT) address"),
        ("127.0.0.0/8", "a loopback address"),
        ("169.254.0.0/16", "a link-local address (where cloud metadata answers)"),
        ("172.16.0.0/12", "a private address"),
        ("192.0.0.0/24", "an IETF protocol address"),
        ("192.0.2.0/24", "a documentation address"),
        ("192.88.99.0/24", "a 6to4 relay address"),
        ("192.168.0.0/16", "a private address"),
        ("198.18.0.0/15", "a benchmarking address"),
        ("198.51.100.0/24", "a documentation address"),
        ("203.0.113.0/24", "a documentation address"),
        ("224.0.0.0/4", "a multicast address"),
        ("255.255.255.255/32", "the broadcast address"),
        ("240.0.0.0/4", "a reserved address"),
        ("::/128", "an unspecified address"),
        ("::1/128", "a loopback address"),
        ("::/96", "an IPv4-compatible address (deprecated)"),
        ("64:ff9b:1::/48", "a local-use NAT64 address"),
        ("100::/64", "a discard-only address"),
        ("2001::/32", "a Teredo address"),
        ("2001:db8::/32", "a documentation address"),
        ("3fff::/20", "a documentation address"),
        ("fc00::/7", "a unique local (private) address"),
        ("fe80::/10", "a link-local address"),
        ("fec0::/10", "a site-local address (deprecated)"),
        ("ff00::/8", "a multicast address"),
    )
)
_GLOBAL_UNICAST_V6 = ip_network("2000::/3")
_NAT64 = ip_network("64:ff9b::/96")

# Names that never lead to a public host. A name alone cannot be matched with the allowed networks, so it is
# refused here only when its network is not allowed; the address it resolves to is checked again when connecting.
_LOOPBACK_NAME = "localhost"  # RFC 6761: localhost and *.localhost are the loopback
_LOOPBACK_ADDRESS = IPv4Address("127.0.0.1")
_METADATA_ADDRESS = IPv4Address("169.254.169.254")
_METADATA_NAMES = frozenset(
    {"metadata", "metadata.google.internal", "instance-data", "instance-data.ec2.internal", "metadata.tencentyun.com"}
)
# .local (mDNS), .internal (ICANN's private use), .arpa (home.arpa, reverse zones), and the common private ones.
_INTERNAL_SUFFIXES = ("internal", "local", "localdomain", "arpa", "lan", "home", "corp", "intranet")
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
# A last label of digits or 0x-hex makes the host an IPv4 address to URL parsers and resolvers (WHATWG, inet_aton).
_NUMERIC_LABEL = re.compile(r"0x[0-9a-f]*|[0-9]+")


def parse_networks(value: str | Iterable[str | IPNetwork]) -> tuple[IPNetwork, ...]:
    """Networks written ``10.0.0.0/8, ::1/128`` (or given one by one); ValueError names one that is not."""
    items = value.split(",") if isinstance(value, str) else value
    networks = []
    for item in items:
        text = item.strip() if isinstance(item, str) else item
        if text:
            try:
                networks.append(ip_network(text))
            except ValueError as exc:
                raise ValueError(f"{text!r} is not a network such as 10.0.0.0/8 or fd00::/8: {exc}") from None
    return tuple(networks)


def address_refusal(address: IPAddress, allowed: Iterable[IPNetwork] = ()) -> str | None:
    """Why ``address`` may not be connected to; None for a public unicast address or one in ``allowed``."""
    allowed = tuple(allowed)
    if _is_allowed(address, allowed):
        return None
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        if _is_allowed(embedded, allowed) or (kind := _kind(embedded)) is None:
            return None
        return f"{address} leads to {embedded}, {kind}"
    kind = _kind(address)
    return f"{address} is {kind}" if kind else None


def url_refusal(url: str, allowed: Iterable[IPNetwork] = ()) -> str | None:
    """Why a request to ``url`` is refused before any lookup; None when only the addresses its host resolves to
    are left to check (at connect time). Refused: schemes other than http and https, credentials, hosts that
    are not a plain name or address, addresses that are not public, names of internal hosts."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        return f"not a URL: {exc}"
    if parsed.scheme not in ("http", "https") or not parsed.raw_host:
        return "an http:// or https:// URL"
    if parsed.userinfo:
        return "credentials in the URL are refused"
    allowed = tuple(allowed)
    host = parsed.raw_host.decode("ascii").lower()
    if ":" in host:
        if "%" in host:
            return f"{host!r}: an IPv6 address with a zone is local to a link"
        try:
            return address_refusal(IPv6Address(host), allowed)
        except ValueError:
            return f"{host!r} is not an IPv6 address"
    name = host.removesuffix(".")
    labels = name.split(".")
    if not all(_LABEL.fullmatch(label) for label in labels):
        return f"{host!r} is not a host name (letters, digits, hyphens) nor an IP address"
    if _NUMERIC_LABEL.fullmatch(labels[-1]):
        return _ipv4_refusal(name, allowed)
    return _name_refusal(name, allowed)


def _ipv4_refusal(name: str, allowed: tuple[IPNetwork, ...]) -> str | None:
    try:
        address = IPv4Address(name)
    except ValueError:
        address = None
    if address is None or str(address) != name:
        # 2130706433, 0x7f000001, 127.1 and 0177.0.0.1 are all 127.0.0.1 to some resolver.
        return f"{name!r}: write an IPv4 address as four decimal numbers, such as 192.0.2.10"
    return address_refusal(address, allowed)


def _name_refusal(name: str, allowed: tuple[IPNetwork, ...]) -> str | None:
    if name == _LOOPBACK_NAME or name.endswith("." + _LOOPBACK_NAME):
        return _unless_allowed(_LOOPBACK_ADDRESS, allowed, f"{name} is the loopback")
    if name in _METADATA_NAMES:
        return _unless_allowed(_METADATA_ADDRESS, allowed, f"{name} is a cloud metadata service")
    if allowed:
        return None  # the operator has internal receivers: the address they resolve to decides
    if "." not in name:
        return f"{name} is a single-label name, which only a local resolver answers"
    if any(name == s or name.endswith("." + s) for s in _INTERNAL_SUFFIXES):
        return f"{name} is a name of an internal network"
    return None


def _unless_allowed(address: IPAddress, allowed: tuple[IPNetwork, ...], reason: str) -> str | None:
    return None if address_refusal(address, allowed) is None else reason


def _is_allowed(address: IPAddress, allowed: tuple[IPNetwork, ...]) -> bool:
    return any(address.version == network.version and address in network for network in allowed)


def _kind(address: IPAddress) -> str | None:
    """What kind of non-public address ``address`` is; None when it is public unicast."""
    for network, kind in _REFUSED:
        if address.version == network.version and address in network:
            return kind
    if isinstance(address, IPv6Address) and address not in _GLOBAL_UNICAST_V6:
        return "outside global unicast (2000::/3)"
    if not address.is_global:
        return "not a public address"
    return None


def _embedded_ipv4(address: IPAddress) -> IPv4Address | None:
    """The IPv4 address an IPv6 one reaches through: IPv4-mapped, NAT64 (well-known prefix), 6to4."""
    if not isinstance(address, IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour
