"""DNS section against a toy resolver on 127.0.0.1: records found, missing ones reported, silence skipped."""

from __future__ import annotations

import ipaddress
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from pyinfra_mailserver import distro
from pyinfra_mailserver.audit import dns
from pyinfra_mailserver.manifest import Manifest, TlsPlan
from pyinfra_mailserver.report import Status

Zone = dict[tuple[str, str], list[str]]

GOOD: Zone = {
    ("example.org", "MX"): ["10 mx1.example.org"],
    ("mx1.example.org", "A"): ["192.0.2.25"],
    ("25.2.0.192.in-addr.arpa", "PTR"): ["mx1.example.org"],
    ("example.org", "TXT"): ["v=spf1 mx -all", "google-site-verification=x"],
    ("_dmarc.example.org", "TXT"): ["v=DMARC1; p=reject"],
}


def _rdata(qtype: str, value: str) -> bytes:
    if qtype == "A":
        return ipaddress.IPv4Address(value).packed
    if qtype == "AAAA":
        return ipaddress.IPv6Address(value).packed
    if qtype == "MX":
        pref, host = value.split()
        return struct.pack("!H", int(pref)) + dns.encode_name(host)
    if qtype == "TXT":
        raw = value.encode()
        return b"".join(bytes([len(raw[i : i + 255])]) + raw[i : i + 255] for i in range(0, len(raw), 255))
    return dns.encode_name(value)


def _answer(query: bytes, zone: Zone) -> bytes:
    qid = struct.unpack("!H", query[:2])[0]
    name, off = dns._read_name(query, 12)
    qtype_n = struct.unpack("!H", query[off : off + 2])[0]
    qtype = dns.NAMES[qtype_n]
    values = zone.get((name.lower(), qtype), [])
    known = any(n == name.lower() for n, _ in zone)
    rcode = 0 if values or known else 3
    header = struct.pack("!HHHHHH", qid, 0x8180 | rcode, 1, len(values), 0, 0)
    question = query[12 : off + 4]
    answers = b""
    for v in values:
        rd = _rdata(qtype, v)
        # owner name as a compression pointer to the question (offset 12), like real servers do
        answers += struct.pack("!HHHIH", 0xC00C, qtype_n, 1, 300, len(rd)) + rd
    return header + question + answers


@contextmanager
def resolver(zone: Zone, silent: bool = False) -> Iterator[str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, addr = sock.recvfrom(4096)
            except TimeoutError:
                continue
            if not silent:
                sock.sendto(_answer(data, zone), addr)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield f"127.0.0.1:{sock.getsockname()[1]}"
    finally:
        stop.set()
        t.join(timeout=5)
        sock.close()


def manifest() -> Manifest:
    return Manifest(
        hostname="mx1.example.org",
        distro=distro.DEBIAN,
        packages=(),
        debconf=(),
        groups=(),
        users=(),
        directories=(),
        files=(),
        maps=(),
        services=(),
        ports=(),
        tls=TlsPlan("generate", "/c", "/k", None, ("mx1.example.org",)),
        postconf={"mydomain": "example.org"},
        postconf_master=(),
    )


def statuses(resolver_addr: str | None, address: str = "192.0.2.25") -> dict[str, tuple[Status, str]]:
    results = dns.run_dns_checks("mx1", manifest(), address, resolver_addr, 1.0)
    return {r.id: (r.status, r.message) for r in results}


def test_all_records_present() -> None:
    with resolver(GOOD) as addr:
        got = statuses(addr)
    assert {k: v[0] for k, v in got.items()} == dict.fromkeys(dns.CHECK_IDS, Status.PASS), got


def test_missing_and_wrong_records_are_findings() -> None:
    zone = dict(GOOD)
    zone[("example.org", "MX")] = ["10 mail.elsewhere.net"]
    zone[("25.2.0.192.in-addr.arpa", "PTR")] = ["host-192-0-2-25.isp.example"]
    zone[("example.org", "TXT")] = ["v=spf1 -all", "v=spf1 mx -all"]  # two SPF records are an error
    del zone[("_dmarc.example.org", "TXT")]
    with resolver(zone) as addr:
        got = statuses(addr)
    for cid in ("dns.mx", "dns.ptr", "dns.spf", "dns.dmarc"):
        assert got[cid][0] is Status.FAIL, (cid, got[cid])
    assert got["dns.a"][0] is Status.PASS
    with resolver(GOOD) as addr:
        got = statuses(addr, address="198.51.100.7")  # A record does not match the host's address
    assert got["dns.a"][0] is Status.FAIL


def test_no_resolver_or_silent_resolver_skips_everything() -> None:
    got = statuses(None)
    assert all(s is Status.SKIP for s, _ in got.values()) and set(got) == set(dns.CHECK_IDS)
    assert "no resolver configured" in got["dns.mx"][1]
    with resolver(GOOD, silent=True) as addr:
        got = statuses(addr)
    assert all(s is Status.SKIP for s, _ in got.values()), got
    assert "did not answer" in got["dns.mx"][1]


def test_name_encoding_rejects_bad_labels() -> None:
    assert dns.encode_name("a.example") == b"\x01a\x07example\x00"
    with pytest.raises(ValueError):
        dns.encode_name("a..example")
    assert dns.reverse_name("192.0.2.25") == "25.2.0.192.in-addr.arpa"
