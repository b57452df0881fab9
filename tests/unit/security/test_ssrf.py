"""The SSRF matrix: check_url refuses every internal destination and accepts public ones.

No test here touches the network: host names go through an injected resolver, and IP literals must
never reach a resolver at all.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence

import pytest

from homa_server.errors import Code, GatewayError
from homa_server.security import ssrf
from homa_server.security.ssrf import (
    URL_DESTINATION_FORBIDDEN,
    URL_HOST_UNRESOLVABLE,
    URL_INVALID,
    URL_SCHEME_NOT_ALLOWED,
    Allowlist,
    OutboundUrlError,
    check_url,
    classify_address,
    parse_ip_literal,
)

DNS: dict[str, list[str]] = {
    "public.test": ["93.184.216.34"],
    "dual.test": ["8.8.8.8", "2606:4700:4700::1111"],
    "internal.test": ["10.0.0.5"],
    "mixed.test": ["93.184.216.34", "192.168.1.10"],
    "mixed6.test": ["2606:4700:4700::1111", "fd12:3456::1"],
    "metadata-alias.test": ["169.254.169.254"],
    "mapped.test": ["::ffff:127.0.0.1"],
    "loop.test": ["127.0.0.1"],
    "hooks.corp.test": ["10.9.9.9"],
    "api.corp.test": ["10.9.9.10"],
    "imds.corp.test": ["169.254.169.254"],
}


class FakeResolver:
    """Answers from DNS; records every query so tests can prove literals never reach it."""

    def __init__(self, table: dict[str, list[str]] | None = None) -> None:
        self.table = DNS if table is None else table
        self.queries: list[str] = []

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.queries.append(host)
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.table[host]


REFUSED: list[tuple[str, str]] = [
    ("http://127.0.0.1/", URL_DESTINATION_FORBIDDEN),
    ("http://127.0.0.1:8080/admin", URL_DESTINATION_FORBIDDEN),
    ("http://[::1]/", URL_DESTINATION_FORBIDDEN),
    ("http://169.254.169.254/latest/meta-data/", URL_DESTINATION_FORBIDDEN),
    ("http://10.0.0.1/", URL_DESTINATION_FORBIDDEN),
    ("http://172.16.5.4/", URL_DESTINATION_FORBIDDEN),
    ("http://192.168.1.1/", URL_DESTINATION_FORBIDDEN),
    ("http://100.64.0.1/", URL_DESTINATION_FORBIDDEN),
    ("http://0x7f000001/", URL_DESTINATION_FORBIDDEN),
    ("http://2130706433/", URL_DESTINATION_FORBIDDEN),
    ("http://017700000001/", URL_DESTINATION_FORBIDDEN),
    ("http://127.1/", URL_DESTINATION_FORBIDDEN),
    ("http://0177.0.0.1/", URL_DESTINATION_FORBIDDEN),
    ("http://0x7f.0.0.1/", URL_DESTINATION_FORBIDDEN),
    ("http://127.0.0.1./", URL_DESTINATION_FORBIDDEN),
    ("http://0/", URL_DESTINATION_FORBIDDEN),
    ("http://0.0.0.0/", URL_DESTINATION_FORBIDDEN),
    ("http://[::]/", URL_DESTINATION_FORBIDDEN),
    ("http://[::ffff:127.0.0.1]/", URL_DESTINATION_FORBIDDEN),
    ("http://[::ffff:7f00:1]/", URL_DESTINATION_FORBIDDEN),
    ("http://[::ffff:8.8.8.8]/", URL_DESTINATION_FORBIDDEN),
    ("http://[::127.0.0.1]/", URL_DESTINATION_FORBIDDEN),
    ("http://[fd00:ec2::254]/", URL_DESTINATION_FORBIDDEN),
    ("http://[fe80::1]/", URL_DESTINATION_FORBIDDEN),
    ("http://[fc00::1]/", URL_DESTINATION_FORBIDDEN),
    ("http://[2002:7f00:1::1]/", URL_DESTINATION_FORBIDDEN),
    ("http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/", URL_DESTINATION_FORBIDDEN),
    ("http://[64:ff9b::7f00:1]/", URL_DESTINATION_FORBIDDEN),
    ("http://224.0.0.1/", URL_DESTINATION_FORBIDDEN),
    ("http://255.255.255.255/", URL_DESTINATION_FORBIDDEN),
    ("http://198.18.0.1/", URL_DESTINATION_FORBIDDEN),
    ("http://192.0.2.10/", URL_DESTINATION_FORBIDDEN),
    ("http://localhost/", URL_DESTINATION_FORBIDDEN),
    ("http://ⓛⓞⓒⓐⓛⓗⓞⓢⓣ/", URL_DESTINATION_FORBIDDEN),
    ("http://\uff11\uff12\uff17.\uff10.\uff10.\uff11/", URL_DESTINATION_FORBIDDEN),  # fullwidth
    ("http://LOCALHOST./", URL_DESTINATION_FORBIDDEN),
    ("http://api.localhost/", URL_DESTINATION_FORBIDDEN),
    ("http://metadata.google.internal/computeMetadata/v1/", URL_DESTINATION_FORBIDDEN),
    ("http://internal.test/hook", URL_DESTINATION_FORBIDDEN),
    ("https://mixed.test/", URL_DESTINATION_FORBIDDEN),
    ("https://mixed6.test/", URL_DESTINATION_FORBIDDEN),
    ("https://metadata-alias.test/", URL_DESTINATION_FORBIDDEN),
    ("https://mapped.test/", URL_DESTINATION_FORBIDDEN),
    ("file:///etc/passwd", URL_SCHEME_NOT_ALLOWED),
    ("gopher://public.test:70/_GET", URL_SCHEME_NOT_ALLOWED),
    ("ftp://public.test/", URL_SCHEME_NOT_ALLOWED),
    ("dict://public.test:11211/", URL_SCHEME_NOT_ALLOWED),
    ("javascript:alert(1)", URL_SCHEME_NOT_ALLOWED),
    ("//public.test/", URL_SCHEME_NOT_ALLOWED),
    ("http://user:pass@public.test/", URL_INVALID),
    ("http://user@public.test/", URL_INVALID),
    ("http://public.test@127.0.0.1/", URL_INVALID),
    ("http://public.test\\@127.0.0.1/", URL_INVALID),
    ("http://public.test /", URL_INVALID),
    ("http://public.test/\r\nHost: x", URL_INVALID),
    ("http:///path", URL_INVALID),
    ("http://public.test:0/", URL_INVALID),
    ("http://public.test:99999/", URL_INVALID),
    ("http://[fe80::1%25eth0]/", URL_INVALID),
    ("http://1.2.3.4.5/", URL_INVALID),
    ("http://256.1.1.1/", URL_INVALID),
    ("http://08.1.1.1/", URL_INVALID),
    ("http://bad_host!.test/", URL_INVALID),
    ("http://nonexistent.test/", URL_HOST_UNRESOLVABLE),
]


@pytest.mark.parametrize(("url", "reason"), REFUSED)
async def test_ssrf_matrix_is_refused(url: str, reason: str) -> None:
    resolver = FakeResolver()
    with pytest.raises(OutboundUrlError) as info:
        await check_url(url, resolver=resolver)
    assert str(info.value.reason) == reason
    assert isinstance(info.value, GatewayError)
    expected_code = Code.PERMISSION_DENIED if reason == URL_DESTINATION_FORBIDDEN else Code.INVALID_ARGUMENT
    assert info.value.code == expected_code
    host = url.split("://", 1)[-1].split("/", 1)[0]
    if (
        host[:1].isdigit()
        or host.startswith("[")
        or "localhost" in host.lower()
        or host == "metadata.google.internal"
    ):
        assert resolver.queries == [], "literals and blocked names must never reach the resolver"


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("http://public.test/", "93.184.216.34"),
        ("https://PUBLIC.test./path?q=1", "93.184.216.34"),
        ("https://dual.test:8443/", "8.8.8.8"),
        ("http://8.8.8.8/", "8.8.8.8"),
        ("http://0x08080808/", "8.8.8.8"),
        ("http://[2606:4700:4700::1111]:8080/x", "2606:4700:4700::1111"),
        ("http://[64:ff9b::808:808]/", "64:ff9b::808:808"),
    ],
)
async def test_public_destinations_are_accepted(url: str, address: str) -> None:
    target = await check_url(url, resolver=FakeResolver())
    assert target.address == address
    assert target.scheme in ("http", "https")
    assert target.url == url


async def test_resolved_target_fields() -> None:
    target = await check_url("https://Dual.Test:8443/a", resolver=FakeResolver())
    assert (target.scheme, target.host, target.port, target.address) == (
        "https",
        "dual.test",
        8443,
        "8.8.8.8",
    )
    assert target.addresses == ("8.8.8.8", "2606:4700:4700::1111")
    assert (await check_url("http://public.test", resolver=FakeResolver())).port == 80
    assert (await check_url("https://public.test", resolver=FakeResolver())).port == 443


async def test_any_private_answer_refuses_and_messages_do_not_leak_internals() -> None:
    with pytest.raises(OutboundUrlError) as info:
        await check_url("https://mixed.test/hooks/SECRET-PATH?token=abc", resolver=FakeResolver())
    error = info.value
    assert "SECRET-PATH" not in error.message
    assert "token" not in error.message
    assert "192.168.1.10" not in error.message
    assert "192.168.1.10" in error.internal_detail
    assert "private" in error.internal_detail
    assert "internal_detail" not in repr(error)


async def test_unresolvable_and_empty_answers() -> None:
    with pytest.raises(OutboundUrlError) as info:
        await check_url("http://empty.test/", resolver=FakeResolver({"empty.test": []}))
    assert str(info.value.reason) == URL_HOST_UNRESOLVABLE

    with pytest.raises(OutboundUrlError) as info:
        await check_url("http://junk.test/", resolver=FakeResolver({"junk.test": ["not-an-ip"]}))
    assert str(info.value.reason) == URL_HOST_UNRESOLVABLE


async def test_slow_resolver_times_out() -> None:
    async def slow(host: str, port: int) -> Sequence[str]:
        await asyncio.sleep(5)
        return ["8.8.8.8"]

    with pytest.raises(OutboundUrlError) as info:
        await check_url("http://slow.test/", resolver=slow, resolve_timeout_s=0.05)
    assert str(info.value.reason) == URL_HOST_UNRESOLVABLE


async def test_allow_private_admits_private_but_never_metadata_or_mapped() -> None:
    resolver = FakeResolver()
    for url in ["http://10.0.0.1/", "http://127.0.0.1:9000/", "http://[fd12::1]/", "http://internal.test/"]:
        await check_url(url, allow_private=True, resolver=resolver)
    for url in [
        "http://169.254.169.254/",
        "http://[fd00:ec2::254]/",
        "http://[::ffff:10.0.0.1]/",
        "http://0.0.0.0/",
        "http://224.0.0.1/",
        "https://metadata-alias.test/",
        "http://metadata.google.internal/",
    ]:
        with pytest.raises(OutboundUrlError) as info:
            await check_url(url, allow_private=True, resolver=resolver)
        assert str(info.value.reason) == URL_DESTINATION_FORBIDDEN, url


async def test_allowlist_hosts_and_networks() -> None:
    allow = Allowlist.from_entries(["hooks.corp.test", "*.corp.test", "10.1.0.0/16", "192.168.7.7"])
    resolver = FakeResolver()
    assert (
        await check_url("http://hooks.corp.test/", allowlist=allow, resolver=resolver)
    ).address == "10.9.9.9"
    assert (
        await check_url("http://api.corp.test/", allowlist=allow, resolver=resolver)
    ).address == "10.9.9.10"
    await check_url("http://10.1.2.3/", allowlist=allow, resolver=resolver)
    await check_url("http://192.168.7.7/", allowlist=allow, resolver=resolver)
    for url in ["http://10.2.0.1/", "http://192.168.7.8/", "http://internal.test/", "http://corp.test.evil/"]:
        with pytest.raises(OutboundUrlError):
            await check_url(
                url, allowlist=allow, resolver=FakeResolver({**DNS, "corp.test.evil": ["10.0.0.1"]})
            )
    # An allow-listed name whose DNS points at the metadata service is still refused.
    with pytest.raises(OutboundUrlError) as info:
        await check_url("http://imds.corp.test/", allowlist=allow, resolver=resolver)
    assert "metadata" in info.value.internal_detail


async def test_allowlisted_network_can_admit_loopback_but_not_unspecified() -> None:
    allow = Allowlist.from_entries(["127.0.0.0/8", "0.0.0.0/0"])
    await check_url("http://127.0.0.1:1234/", allowlist=allow, resolver=FakeResolver())
    with pytest.raises(OutboundUrlError):
        await check_url("http://0.0.0.0/", allowlist=allow, resolver=FakeResolver())


def test_allowlist_rejects_garbage_entries() -> None:
    with pytest.raises(ValueError, match="allow-list"):
        Allowlist.from_entries(["not a host!"])


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("0x7f000001", "127.0.0.1"),
        ("0X7F000001", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0x7f.0x0.0x0.0x1", "127.0.0.1"),
        ("127.0.0.1.", "127.0.0.1"),
        ("0", "0.0.0.0"),
        ("169.254.43518", "169.254.169.254"),
        ("[::ffff:127.0.0.1]", "::ffff:7f00:1"),
        ("[::1]", "::1"),
        ("example.com", None),
        ("1.2.3.example", None),
    ],
)
def test_ip_literal_parsing_follows_inet_aton(host: str, expected: str | None) -> None:
    parsed = parse_ip_literal(host)
    assert (parsed.compressed if parsed else None) == expected


@pytest.mark.parametrize(
    ("address", "category"),
    [
        ("127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.31.255.255", "private"),
        ("172.32.0.1", None),
        ("192.168.0.1", "private"),
        ("100.64.0.1", "carrier_grade_nat"),
        ("100.128.0.1", None),
        ("169.254.1.1", "link_local"),
        ("169.254.169.254", "metadata"),
        ("169.254.170.2", "metadata"),
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "reserved"),
        ("240.0.0.1", "reserved"),
        ("224.0.0.251", "multicast"),
        ("8.8.8.8", None),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link_local"),
        ("fc00::1", "unique_local"),
        ("fd00:ec2::254", "metadata"),
        ("fec0::1", "site_local"),
        ("ff02::1", "multicast"),
        ("::ffff:8.8.8.8", "ipv4_mapped"),
        ("::7f00:1", "ipv4_compatible"),
        ("2002:0808:0808::1", "6to4"),
        ("2001::1", "teredo"),
        ("64:ff9b::a00:1", "nat64:private"),
        ("64:ff9b::808:808", None),
        ("2001:db8::1", "reserved"),
        ("2606:4700:4700::1111", None),
    ],
)
def test_classify_address(address: str, category: str | None) -> None:
    assert classify_address(ipaddress.ip_address(address)) == category


async def test_system_resolver_handles_numeric_hosts_without_network() -> None:
    assert list(await ssrf.system_resolver("127.0.0.1", 80)) == ["127.0.0.1"]
