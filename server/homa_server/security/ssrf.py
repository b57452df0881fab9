"""SSRF guard for caller-supplied outbound URLs (webhooks, image URLs).

Contract:

* `check_url(url)` accepts only `http`/`https` URLs without user information, with a host and a valid
  port; resolves the host (IP literals, including odd IPv4 spellings such as `0x7f000001`, `2130706433`,
  `017700000001` or `127.1`, are parsed with inet_aton semantics and never sent to DNS) and refuses the URL
  if ANY resolved address is not a public unicast address (see `classify_address` for the categories).
  It returns a `ResolvedTarget` naming the one checked address the connection must use.
* Nothing is fetched by `check_url`. `fetch(url)` checks the URL, then connects to exactly
  `ResolvedTarget.address` (a `PinnedResolver` answers aiohttp's look-up with that address only) while the
  request line, `Host` header, TLS SNI and certificate verification use the original host name — so a DNS
  answer that changes between check and connect (rebinding) cannot redirect the connection. It follows no
  redirects (a 3xx raises `URL_REDIRECT_NOT_FOLLOWED`, or is returned with `raise_on_redirect=False`),
  ignores proxy environment variables, and bounds the response size and the total time.
* Exemptions come only from settings: `allow_private=True` admits loopback/private/link-local/CGNAT/
  unique-local/reserved addresses (never cloud metadata, unspecified, multicast or IPv4-mapped/tunnelled
  IPv6 addresses); an `Allowlist` admits named hosts (`hooks.internal`, `*.corp.example`) and networks
  (`10.20.0.0/16`). Allow-listed networks exempt everything but unspecified and multicast addresses.
* Errors are `OutboundUrlError` (a `GatewayError`) whose message names at most the host, never the path,
  query or resolved internal addresses; the precise cause is in `internal_detail`, for logs only.

Tunnelled IPv6 (decision): IPv4-mapped (`::ffff:0:0/96`) and IPv4-compatible (`::/96`) addresses, 6to4
(`2002::/16`) and Teredo (`2001::/32`) are always refused — no legitimate webhook or image host needs them
and each can smuggle an internal IPv4 address. NAT64 (`64:ff9b::/96`) is judged by the IPv4 address it
embeds.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import ssl as ssl_module
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlsplit

import aiohttp
import yarl
from aiohttp.abc import AbstractResolver, ResolveResult

from homa_server.errors import Code, GatewayError, Reason

__all__ = [
    "URL_DESTINATION_FORBIDDEN",
    "URL_FETCH_FAILED",
    "URL_FETCH_TIMEOUT",
    "URL_HOST_UNRESOLVABLE",
    "URL_INVALID",
    "URL_REDIRECT_NOT_FOLLOWED",
    "URL_RESPONSE_TOO_LARGE",
    "URL_SCHEME_NOT_ALLOWED",
    "Allowlist",
    "FetchResponse",
    "IPAddress",
    "OutboundUrlError",
    "PinnedResolver",
    "ResolvedTarget",
    "Resolver",
    "check_url",
    "classify_address",
    "fetch",
    "parse_ip_literal",
    "pinned_connector",
    "system_resolver",
]

# Reason strings (to be added to errors.Reason and docs/errors.md).
URL_INVALID: Final = "URL_INVALID"
"""INVALID_ARGUMENT: malformed URL, user information, bad port, zone id, control characters."""
URL_SCHEME_NOT_ALLOWED: Final = "URL_SCHEME_NOT_ALLOWED"
"""INVALID_ARGUMENT: a scheme other than http or https."""
URL_HOST_UNRESOLVABLE: Final = "URL_HOST_UNRESOLVABLE"
"""INVALID_ARGUMENT: the host name does not resolve (or resolution timed out)."""
URL_DESTINATION_FORBIDDEN: Final = "URL_DESTINATION_FORBIDDEN"
"""PERMISSION_DENIED: the host or one of its addresses is internal, metadata or otherwise not public."""
URL_REDIRECT_NOT_FOLLOWED: Final = "URL_REDIRECT_NOT_FOLLOWED"
"""FAILED_PRECONDITION: the server answered with a redirect, which is never followed."""
URL_RESPONSE_TOO_LARGE: Final = "URL_RESPONSE_TOO_LARGE"
"""INVALID_ARGUMENT: the response body exceeds the configured maximum."""
URL_FETCH_TIMEOUT: Final = "URL_FETCH_TIMEOUT"
"""DEADLINE_EXCEEDED (retryable): the fetch did not complete in time."""
URL_FETCH_FAILED: Final = "URL_FETCH_FAILED"
"""UNAVAILABLE (retryable): connection refused or reset, TLS failure, protocol error."""

MAX_URL_LENGTH: Final = 8192
DEFAULT_MAX_BYTES: Final = 20 * 1024 * 1024
DEFAULT_TIMEOUT_S: Final = 10.0
DEFAULT_RESOLVE_TIMEOUT_S: Final = 5.0

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
"""`resolver(host, port)` returns the host's IP addresses as strings; raises OSError if it has none."""


def _reason(value: str) -> Reason:
    return Reason(value)


@dataclass(eq=False)
class OutboundUrlError(GatewayError):
    """A refused or failed outbound URL. `internal_detail` is for logs only, never sent to callers."""

    internal_detail: str = field(default="", repr=False)


def _error(
    code: Code, reason: str, message: str, detail: str = "", *, retryable: bool = False
) -> OutboundUrlError:
    return OutboundUrlError(message, code, _reason(reason), retryable=retryable, internal_detail=detail)


def _invalid(message: str, detail: str = "") -> OutboundUrlError:
    return _error(Code.INVALID_ARGUMENT, URL_INVALID, message, detail)


# --------------------------------------------------------------------------------------------------
# Address classification

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network

METADATA_ADDRESSES: Final = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, ...
        "169.254.170.2",  # AWS ECS task metadata
        "169.254.169.253",  # AWS VPC DNS
        "169.254.169.123",  # AWS time sync
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud (classic)
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "fd00:ec2::23",  # AWS time sync over IPv6
    )
)
"""Cloud instance-metadata endpoints: refused even with `allow_private` and host allow-lists."""

BLOCKED_HOST_NAMES: Final = frozenset(
    {
        "localhost",
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
    }
)
"""Names refused before resolution (and any `*.localhost`), unless the host is allow-listed."""

_PRIVATE_V4: Final = (_V4("10.0.0.0/8"), _V4("172.16.0.0/12"), _V4("192.168.0.0/16"))
_CGNAT: Final = _V4("100.64.0.0/10")
_UNIQUE_LOCAL: Final = _V6("fc00::/7")
_SITE_LOCAL: Final = _V6("fec0::/10")
_V4_COMPATIBLE: Final = _V6("::/96")
_SIX_TO_FOUR: Final = _V6("2002::/16")
_TEREDO: Final = _V6("2001::/32")
_NAT64: Final = _V6("64:ff9b::/96")

# Categories `allow_private=True` admits; everything else stays refused.
PRIVATE_CATEGORIES: Final = frozenset(
    {"loopback", "private", "link_local", "carrier_grade_nat", "unique_local", "site_local", "reserved"}
)
_NEVER_ALLOWED: Final = frozenset({"unspecified", "multicast"})


def classify_address(ip: IPAddress) -> str | None:
    """Return why `ip` is not a public unicast destination, or None if it is.

    Categories: `ipv4_mapped`, `ipv4_compatible`, `6to4`, `teredo`, `nat64:<category>`, `metadata`,
    `unspecified`, `multicast`, `loopback`, `link_local`, `private`, `carrier_grade_nat`,
    `unique_local`, `site_local`, `reserved` (anything else that is not globally routable: TEST-NETs,
    benchmarking, 0/8, 240/4, broadcast, documentation and discard prefixes, ...).
    """
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return "ipv4_mapped"
        if ip in _V4_COMPATIBLE and int(ip) > 1:
            return "ipv4_compatible"
        if ip in _SIX_TO_FOUR:
            return "6to4"
        if ip in _TEREDO:
            return "teredo"
        if ip in _NAT64:
            inner = classify_address(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
            return None if inner is None else f"nat64:{inner}"
    if ip in METADATA_ADDRESSES:
        return "metadata"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_multicast:
        return "multicast"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link_local"
    if isinstance(ip, ipaddress.IPv4Address):
        if any(ip in net for net in _PRIVATE_V4):
            return "private"
        if ip in _CGNAT:
            return "carrier_grade_nat"
    else:
        if ip in _UNIQUE_LOCAL:
            return "unique_local"
        if ip in _SITE_LOCAL:
            return "site_local"
    if not ip.is_global:
        return "reserved"
    return None


# --------------------------------------------------------------------------------------------------
# Host parsing

_IPV4_PART: Final = re.compile(r"^(?:0[xX][0-9a-fA-F]*|[0-9]+)$")


def _parse_ipv4_loose(host: str) -> ipaddress.IPv4Address | None:
    """inet_aton/WHATWG semantics: 1-4 parts, each decimal, octal (leading 0) or hex (0x).

    Returns None when `host` is not numeric; raises `OutboundUrlError` when it looks numeric (its last
    label is a number) but is not a valid address, so that no resolver ever gets to interpret it.
    """
    labels = host.split(".")
    if labels and labels[-1] == "" and len(labels) > 1:
        labels = labels[:-1]  # one trailing dot
    if not labels or not _IPV4_PART.match(labels[-1]):
        return None
    values: list[int] = []
    for label in labels:
        if not _IPV4_PART.match(label):
            raise _invalid("URL host is not a valid IP address", f"host={host!r}")
        if label[:2] in ("0x", "0X"):
            values.append(int(label[2:] or "0", 16))
        elif len(label) > 1 and label[0] == "0":
            if any(c in "89" for c in label):
                raise _invalid("URL host is not a valid IP address", f"host={host!r}")
            values.append(int(label, 8))
        else:
            values.append(int(label))
    if len(values) > 4 or any(v > 255 for v in values[:-1]):
        raise _invalid("URL host is not a valid IP address", f"host={host!r}")
    last_bits = 8 * (5 - len(values))
    if values[-1] >= 1 << last_bits:
        raise _invalid("URL host is not a valid IP address", f"host={host!r}")
    number = values[-1]
    for index, value in enumerate(values[:-1]):
        number |= value << (24 - 8 * index)
    return ipaddress.IPv4Address(number)


def parse_ip_literal(host: str) -> IPAddress | None:
    """Parse a URL host as an IP address (`[v6]`, dotted quad or any inet_aton spelling), else None.

    Raises:
        OutboundUrlError(URL_INVALID): numeric-looking but invalid, or an IPv6 zone id.
    """
    if host.startswith("[") and host.endswith("]"):
        inner = host[1:-1]
        if "%" in inner:
            raise _invalid("IPv6 zone identifiers are not allowed in URLs")
        try:
            return ipaddress.IPv6Address(inner)
        except ValueError:
            raise _invalid("URL host is not a valid IPv6 address") from None
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host)
        except ValueError:
            raise _invalid("URL host is not valid") from None
    return _parse_ipv4_loose(host)


def _normalise_name(host: str) -> str:
    """Lower-case, strip one trailing dot, IDNA-encode; refuse anything that is not a plain DNS name."""
    name = host.lower()
    if name.endswith("."):
        name = name[:-1]
    if not name or len(name) > 253:
        raise _invalid("URL host is empty or too long")
    try:
        name = name.encode("idna").decode("ascii")
    except UnicodeError:
        raise _invalid("URL host is not a valid domain name") from None
    if not all(re.fullmatch(r"[a-z0-9_](?:[a-z0-9_\-]{0,61}[a-z0-9_])?", label) for label in name.split(".")):
        raise _invalid("URL host is not a valid domain name")
    return name


# --------------------------------------------------------------------------------------------------
# Policy


@dataclass(frozen=True, slots=True)
class Allowlist:
    """Settings-driven exemptions: host names (exact, or `*.suffix` for any subdomain) and networks.

    An allow-listed host's addresses may be internal (not metadata, unspecified or multicast); an
    address inside an allow-listed network is accepted whatever the host (not unspecified/multicast).
    """

    hosts: frozenset[str] = frozenset()
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @classmethod
    def from_entries(cls, entries: Iterable[str]) -> Allowlist:
        """Build from settings strings: CIDRs or IP addresses become networks, the rest host patterns.

        Raises:
            ValueError: an entry is neither a network nor a host name pattern.
        """
        hosts: set[str] = set()
        networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for raw in entries:
            entry = raw.strip().lower()
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
                continue
            except ValueError:
                pass
            wildcard = entry.startswith("*.")
            try:
                name = _normalise_name(entry[2:] if wildcard else entry)
            except GatewayError:
                raise ValueError(f"invalid SSRF allow-list entry: {raw!r}") from None
            hosts.add(("*." if wildcard else "") + name)
        return cls(frozenset(hosts), tuple(networks))

    def allows_host(self, host: str) -> bool:
        """Whether the normalised host name is allow-listed."""
        if host in self.hosts:
            return True
        return any(
            entry.startswith("*.") and host.endswith(entry[1:]) and host != entry[2:] for entry in self.hosts
        )

    def allows_address(self, ip: IPAddress) -> bool:
        """Whether `ip` lies in an allow-listed network."""
        return any(ip.version == net.version and ip in net for net in self.networks)


_EMPTY_ALLOWLIST: Final = Allowlist()


@dataclass(frozen=True, slots=True)
class ResolvedTarget:
    """A checked destination: connect to `address` only, while speaking to `host` (Host, SNI).

    `host` is the normalised host name (or the canonical IP for literals), `addresses` every address
    the name resolved to (all of them passed the check), `url` the URL as given.
    """

    scheme: str
    host: str
    port: int
    address: str
    addresses: tuple[str, ...] = ()
    url: str = ""


async def system_resolver(host: str, port: int) -> Sequence[str]:
    """Resolve with the running event loop's getaddrinfo (TCP); scope ids are dropped."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return [str(info[4][0]).split("%", 1)[0] for info in infos]


def _check_address(
    ip: IPAddress, *, allow_private: bool, host_allowed: bool, allowlist: Allowlist
) -> str | None:
    """None if `ip` may be contacted, else the refusing category."""
    category = classify_address(ip)
    if category is None:
        return None
    if category in _NEVER_ALLOWED:
        return category
    if allowlist.allows_address(ip):
        return None
    if host_allowed and category != "metadata":
        return None
    if allow_private and category in PRIVATE_CATEGORIES:
        return None
    return category


async def check_url(
    url: str,
    *,
    allow_private: bool = False,
    allowlist: Allowlist | None = None,
    resolver: Resolver | None = None,
    resolve_timeout_s: float = DEFAULT_RESOLVE_TIMEOUT_S,
) -> ResolvedTarget:
    """Check a caller-supplied URL and return the address the connection must be pinned to.

    Raises:
        OutboundUrlError: URL_INVALID, URL_SCHEME_NOT_ALLOWED (INVALID_ARGUMENT),
            URL_HOST_UNRESOLVABLE (INVALID_ARGUMENT) or URL_DESTINATION_FORBIDDEN (PERMISSION_DENIED).
    """
    allowlist = allowlist if allowlist is not None else _EMPTY_ALLOWLIST
    if len(url) > MAX_URL_LENGTH:
        raise _invalid("URL is too long")
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F or c == "\\" for c in url):
        raise _invalid("URL contains whitespace, control characters or backslashes")
    try:
        parts = urlsplit(url)
        port_value = parts.port
    except ValueError:
        raise _invalid("URL is malformed or its port is invalid") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise _error(
            Code.INVALID_ARGUMENT, URL_SCHEME_NOT_ALLOWED, "only http and https URLs are allowed", scheme
        )
    if "@" in parts.netloc:
        raise _invalid("URLs with user information (user:password@) are not allowed")
    netloc = parts.netloc
    if netloc.startswith("["):
        raw_host = netloc[: netloc.find("]") + 1]
    else:
        raw_host = netloc.rsplit(":", 1)[0] if ":" in netloc else netloc
    if not raw_host:
        raise _invalid("URL has no host")
    port = port_value if port_value is not None else (443 if scheme == "https" else 80)
    if port == 0:
        raise _invalid("URL port 0 is not allowed")

    addresses: list[IPAddress]
    literal = parse_ip_literal(raw_host)
    if literal is None:
        host = _normalise_name(raw_host)
        literal = parse_ip_literal(host)  # IDNA maps fullwidth digits to ASCII ones
    if literal is not None:
        host = literal.compressed
        addresses = [literal]
        host_allowed = allowlist.allows_address(literal)
    else:
        host_allowed = allowlist.allows_host(host)
        if not host_allowed and (host in BLOCKED_HOST_NAMES or host.endswith(".localhost")):
            raise _error(
                Code.PERMISSION_DENIED,
                URL_DESTINATION_FORBIDDEN,
                f"URL host {host!r} is not an allowed destination",
                f"host={host} category=blocked_name",
            )
        addresses = await _resolve(host, port, resolver or system_resolver, resolve_timeout_s)

    for ip in addresses:
        category = _check_address(
            ip, allow_private=allow_private, host_allowed=host_allowed, allowlist=allowlist
        )
        if category is not None:
            raise _error(
                Code.PERMISSION_DENIED,
                URL_DESTINATION_FORBIDDEN,
                f"URL host {host!r} is not an allowed destination",
                f"host={host} address={ip} category={category}",
            )
    return ResolvedTarget(
        scheme=scheme,
        host=host,
        port=port,
        address=addresses[0].compressed,
        addresses=tuple(ip.compressed for ip in addresses),
        url=url,
    )


async def _resolve(host: str, port: int, resolver: Resolver, timeout_s: float) -> list[IPAddress]:
    try:
        async with asyncio.timeout(timeout_s):
            raw = await resolver(host, port)
    except (OSError, TimeoutError) as exc:
        raise _error(
            Code.INVALID_ARGUMENT,
            URL_HOST_UNRESOLVABLE,
            f"URL host {host!r} could not be resolved",
            f"host={host} error={type(exc).__name__}",
        ) from None
    addresses: list[IPAddress] = []
    for value in raw:
        try:
            addresses.append(ipaddress.ip_address(value.split("%", 1)[0]))
        except ValueError:
            raise _error(
                Code.INVALID_ARGUMENT,
                URL_HOST_UNRESOLVABLE,
                f"URL host {host!r} could not be resolved",
                f"host={host} resolver returned a non-address",
            ) from None
    if not addresses:
        raise _error(
            Code.INVALID_ARGUMENT,
            URL_HOST_UNRESOLVABLE,
            f"URL host {host!r} could not be resolved",
            f"host={host} no addresses",
        )
    return addresses


# --------------------------------------------------------------------------------------------------
# Pinned connections


def _same_host(requested: str, target: ResolvedTarget) -> bool:
    name = requested.lower().rstrip(".")
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    try:
        return ipaddress.ip_address(name).compressed == target.host
    except ValueError:
        pass
    try:
        literal = _parse_ipv4_loose(name)
    except GatewayError:
        return False
    if literal is not None:
        return literal.compressed == target.host
    try:
        return _normalise_name(name) == target.host
    except GatewayError:
        return False


class PinnedResolver(AbstractResolver):
    """An aiohttp resolver that answers only for the checked host, and only with the checked address.

    Any other host name raises OSError, so a connector built on it cannot reach anything else.
    """

    def __init__(self, target: ResolvedTarget) -> None:
        self._target = target
        self.calls = 0

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """Return the pinned address for the checked host; raise OSError for any other host."""
        self.calls += 1
        if not _same_host(host, self._target):
            raise OSError(f"pinned resolver refuses host {host!r}")
        ip = ipaddress.ip_address(self._target.address)
        return [
            ResolveResult(
                hostname=host,
                host=ip.compressed,
                port=port or self._target.port,
                family=socket.AF_INET if ip.version == 4 else socket.AF_INET6,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
        ]

    async def close(self) -> None:
        """Nothing to release."""


def pinned_connector(
    target: ResolvedTarget, *, ssl: ssl_module.SSLContext | bool = True
) -> aiohttp.TCPConnector:
    """A one-connection aiohttp connector that reaches only `target.address` (TLS verified for the host).

    Must be created inside a running event loop; close it (or the session owning it) when done.
    """
    return aiohttp.TCPConnector(
        resolver=PinnedResolver(target),
        use_dns_cache=False,
        ssl=ssl,
        limit=1,
        force_close=True,
    )


@dataclass(frozen=True, slots=True)
class FetchResponse:
    """A completed fetch: status, response headers (last value wins), body, and any redirect target."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    target: ResolvedTarget
    location: str | None = None


def _request_url(target: ResolvedTarget) -> yarl.URL:
    """The URL aiohttp will use, refusing any disagreement between our parser and yarl's."""
    try:
        parsed = yarl.URL(target.url)
    except ValueError:
        raise _invalid("URL is malformed") from None
    if (
        parsed.scheme.lower() != target.scheme
        or parsed.host is None
        or not _same_host(parsed.host, target)
        or parsed.port != target.port
        or parsed.user is not None
        or parsed.password is not None
    ):
        raise _invalid("URL is ambiguous", f"yarl host={parsed.host!r} port={parsed.port}")
    return parsed


async def fetch(
    url: str,
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    data: bytes | None = None,
    allow_private: bool = False,
    allowlist: Allowlist | None = None,
    resolver: Resolver | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    raise_on_redirect: bool = True,
    ssl: ssl_module.SSLContext | bool = True,
) -> FetchResponse:
    """Check `url`, then send one request over a connection pinned to the checked address.

    No redirects are followed. `timeout_s` bounds everything (resolution, connect, TLS, body);
    `max_bytes` bounds the (decompressed) body. Proxy environment variables are ignored.

    Raises:
        OutboundUrlError: any `check_url` error; URL_REDIRECT_NOT_FOLLOWED (FAILED_PRECONDITION) for a
            3xx when `raise_on_redirect`; URL_RESPONSE_TOO_LARGE (INVALID_ARGUMENT);
            URL_FETCH_TIMEOUT (DEADLINE_EXCEEDED); URL_FETCH_FAILED (UNAVAILABLE).
    """
    try:
        async with asyncio.timeout(timeout_s):
            target = await check_url(
                url,
                allow_private=allow_private,
                allowlist=allowlist,
                resolver=resolver,
                resolve_timeout_s=min(timeout_s, DEFAULT_RESOLVE_TIMEOUT_S),
            )
            return await _fetch_pinned(
                target,
                method=method,
                headers=headers,
                data=data,
                max_bytes=max_bytes,
                raise_on_redirect=raise_on_redirect,
                ssl=ssl,
            )
    except TimeoutError:
        raise _error(
            Code.DEADLINE_EXCEEDED,
            URL_FETCH_TIMEOUT,
            f"fetching from {urlsplit(url).hostname!r} timed out",
            retryable=True,
        ) from None


async def _fetch_pinned(
    target: ResolvedTarget,
    *,
    method: str,
    headers: Mapping[str, str] | None,
    data: bytes | None,
    max_bytes: int,
    raise_on_redirect: bool,
    ssl: ssl_module.SSLContext | bool,
) -> FetchResponse:
    request_url = _request_url(target)
    try:
        async with (
            aiohttp.ClientSession(
                connector=pinned_connector(target, ssl=ssl), trust_env=False, connector_owner=True
            ) as session,
            session.request(
                method, request_url, headers=dict(headers or {}), data=data, allow_redirects=False
            ) as response,
        ):
            response_headers = dict(response.headers.items())
            if 300 <= response.status < 400:
                location = response.headers.get("Location")
                if raise_on_redirect:
                    raise _error(
                        Code.FAILED_PRECONDITION,
                        URL_REDIRECT_NOT_FOLLOWED,
                        f"{target.host!r} answered with a redirect, which is not followed",
                        f"status={response.status}",
                    )
                return FetchResponse(response.status, response_headers, b"", target, location)
            if response.content_length is not None and response.content_length > max_bytes:
                raise _too_large(target, max_bytes)
            body = bytearray()
            async for chunk in response.content.iter_chunked(64 * 1024):
                body += chunk
                if len(body) > max_bytes:
                    raise _too_large(target, max_bytes)
            return FetchResponse(response.status, response_headers, bytes(body), target)
    except (aiohttp.ClientError, OSError, ssl_module.SSLError) as exc:
        raise _error(
            Code.UNAVAILABLE,
            URL_FETCH_FAILED,
            f"fetching from {target.host!r} failed",
            f"{type(exc).__name__}",
            retryable=True,
        ) from None


def _too_large(target: ResolvedTarget, max_bytes: int) -> OutboundUrlError:
    return _error(
        Code.INVALID_ARGUMENT,
        URL_RESPONSE_TOO_LARGE,
        f"the response from {target.host!r} exceeds {max_bytes} bytes",
    )
