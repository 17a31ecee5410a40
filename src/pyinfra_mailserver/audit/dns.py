"""Optional DNS section of the audit: MX, A/AAAA, PTR, SPF, DMARC, asked of one explicitly named resolver.

A minimal stub-resolver client (UDP, one question) so the audit needs no DNS library and never falls back
to whatever resolver the controller happens to have: without a named resolver, or when it does not answer
quickly, every DNS check is skipped with a notice — never passed.
"""

from __future__ import annotations

import ipaddress
import secrets
import socket
import struct
from dataclasses import dataclass

from pyinfra_mailserver.manifest import Manifest
from pyinfra_mailserver.report import CheckResult, CheckSet, Severity

TYPES = {"A": 1, "NS": 2, "CNAME": 5, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28}
NAMES = {v: k for k, v in TYPES.items()}
CHECK_IDS = ("dns.mx", "dns.a", "dns.ptr", "dns.spf", "dns.dmarc")


class DnsError(Exception):
    """The resolver did not answer usefully (timeout, SERVFAIL, garbage)."""


@dataclass(frozen=True)
class Record:
    name: str
    type: str
    data: str  # A/AAAA: address; MX: "pref host"; TXT: joined strings; PTR/CNAME/NS: host


def encode_name(name: str) -> bytes:
    out = b""
    for label in name.rstrip(".").split("."):
        raw = label.encode("idna") if label else b""
        if not raw or len(raw) > 63:
            raise ValueError(f"bad DNS name {name!r}")
        out += bytes([len(raw)]) + raw
    return out + b"\0"


def build_query(name: str, qtype: str, qid: int) -> bytes:
    header = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)  # recursion desired, one question
    return header + encode_name(name) + struct.pack("!HH", TYPES[qtype], 1)


def _read_name(msg: bytes, off: int) -> tuple[str, int]:
    labels: list[str] = []
    jumped, end, hops = False, off, 0
    while True:
        if off >= len(msg):
            raise DnsError("truncated name")
        n = msg[off]
        if n & 0xC0 == 0xC0:
            if hops > 20:
                raise DnsError("compression loop")
            ptr = struct.unpack("!H", msg[off : off + 2])[0] & 0x3FFF
            if not jumped:
                end = off + 2
            off, jumped, hops = ptr, True, hops + 1
            continue
        off += 1
        if n == 0:
            break
        labels.append(msg[off : off + n].decode("ascii", "replace"))
        off += n
    return ".".join(labels), (end if jumped else off)


def parse_response(msg: bytes, qid: int) -> tuple[int, list[Record]]:
    """(rcode, answer records) of a response to query `qid`."""
    if len(msg) < 12:
        raise DnsError("short response")
    rid, flags, qd, an, _ns, _ar = struct.unpack("!HHHHHH", msg[:12])
    if rid != qid or not flags & 0x8000:
        raise DnsError("response does not match the query")
    off = 12
    for _ in range(qd):
        _, off = _read_name(msg, off)
        off += 4
    records = []
    for _ in range(an):
        name, off = _read_name(msg, off)
        rtype, _cls, _ttl, rdlen = struct.unpack("!HHIH", msg[off : off + 10])
        off += 10
        rdata = msg[off : off + rdlen]
        t = NAMES.get(rtype)
        if t == "A" and rdlen == 4:
            data = str(ipaddress.IPv4Address(rdata))
        elif t == "AAAA" and rdlen == 16:
            data = str(ipaddress.IPv6Address(rdata))
        elif t == "MX":
            pref = struct.unpack("!H", rdata[:2])[0]
            data = f"{pref} {_read_name(msg, off + 2)[0]}"
        elif t in ("PTR", "CNAME", "NS"):
            data = _read_name(msg, off)[0]
        elif t == "TXT":
            parts, i = [], 0
            while i < len(rdata):
                n = rdata[i]
                parts.append(rdata[i + 1 : i + 1 + n].decode("utf-8", "replace"))
                i += 1 + n
            data = "".join(parts)
        else:
            data = rdata.hex()
        if t is not None:
            records.append(Record(name, t, data))
        off += rdlen
    return flags & 0xF, records


def query(resolver: str, name: str, qtype: str, timeout: float = 2.0, port: int = 53) -> list[Record]:
    """Answers of type `qtype` for `name` (empty for NXDOMAIN/NODATA); DnsError when there is no answer."""
    qid = secrets.randbelow(65536)
    family = socket.AF_INET6 if ":" in resolver else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.sendto(build_query(name, qtype, qid), (resolver, port))
            while True:
                data, _ = s.recvfrom(4096)
                try:
                    rcode, records = parse_response(data, qid)
                    break
                except DnsError:
                    continue  # a stray datagram: keep waiting for ours until the timeout
        except OSError as e:
            raise DnsError(f"no answer from {resolver}: {e or type(e).__name__}") from e
    if rcode not in (0, 3):
        raise DnsError(f"{resolver} answered rcode {rcode} for {name} {qtype}")
    return [r for r in records if r.type == qtype]


def reverse_name(address: str) -> str:
    return ipaddress.ip_address(address).reverse_pointer


def _split(resolver: str) -> tuple[str, int]:
    """`IP`, `IP:PORT` or `[IPv6]:PORT`."""
    if resolver.startswith("["):
        host, _, port = resolver[1:].partition("]:")
        return host, int(port or 53)
    if resolver.count(":") == 1:
        host, port = resolver.split(":")
        return host, int(port)
    return resolver, 53


def run_dns_checks(
    host: str, m: Manifest, address: str, resolver: str | None, timeout: float = 2.0
) -> list[CheckResult]:
    checks = CheckSet(host, "audit")
    if not resolver:
        for cid in CHECK_IDS:
            checks.skip(
                cid,
                "DNS checks skipped: no resolver configured (--dns-resolver or "
                "mailserver_audit.dns_resolver)",
            )
        return checks.results
    server, port = _split(resolver)
    name = m.hostname
    domain = m.postconf.get("mydomain") or name.split(".", 1)[-1]

    def q(qname: str, qtype: str) -> list[Record]:
        return query(server, qname, qtype, min(timeout, 3.0), port)

    try:
        mx = q(domain, "MX")
    except DnsError as e:
        for cid in CHECK_IDS:
            checks.skip(cid, f"DNS checks skipped: resolver {resolver} did not answer ({e})")
        return checks.results
    targets = [r.data.split(" ", 1)[1].rstrip(".").lower() for r in mx]
    checks.add(
        "dns.mx",
        name.lower() in targets,
        f"MX of {domain}: {targets or 'none'}, not {name}",
        ok_message=f"MX of {domain} points to {name}",
        severity=Severity.MEDIUM,
        fix=f"publish `{domain}. MX 10 {name}.`",
    )
    try:
        addrs = [r.data for r in q(name, "A")] + [r.data for r in q(name, "AAAA")]
        is_ip = _is_ip(address)
        ok = bool(addrs) and (not is_ip or address in addrs)
        checks.add(
            "dns.a",
            ok,
            f"{name} resolves to {addrs or 'nothing'}" + (f", not {address}" if is_ip else ""),
            ok_message=f"{name} -> {', '.join(addrs)}",
            severity=Severity.MEDIUM,
            fix=f"publish A/AAAA records of {name} with the host's address",
        )
        if is_ip:
            ptr = [r.data.rstrip(".").lower() for r in q(reverse_name(address), "PTR")]
            checks.add(
                "dns.ptr",
                name.lower() in ptr,
                f"PTR of {address}: {ptr or 'none'}, not {name}",
                ok_message=f"PTR of {address} is {name}",
                severity=Severity.MEDIUM,
                fix=f"ask the address owner for PTR {address} -> {name} (receivers check it)",
            )
        else:
            checks.skip("dns.ptr", f"{address} is not an IP address: PTR not checked")
        spf = [r.data for r in q(domain, "TXT") if r.data.lower().startswith("v=spf1")]
        checks.add(
            "dns.spf",
            len(spf) == 1,
            f"{domain}: {len(spf)} SPF records (need exactly one)",
            ok_message=f"SPF: {spf[0] if spf else ''}",
            severity=Severity.LOW,
            fix=f'publish `{domain}. TXT "v=spf1 mx -all"`',
        )
        dmarc = [r.data for r in q(f"_dmarc.{domain}", "TXT") if r.data.startswith("v=DMARC1")]
        checks.add(
            "dns.dmarc",
            len(dmarc) == 1,
            f"_dmarc.{domain}: no DMARC record",
            ok_message=f"DMARC: {dmarc[0] if dmarc else ''}",
            severity=Severity.LOW,
            fix=f'publish `_dmarc.{domain}. TXT "v=DMARC1; p=quarantine"`',
        )
    except DnsError as e:
        done = {r.id for r in checks.results}
        for cid in CHECK_IDS:
            if cid not in done:
                checks.skip(cid, f"resolver {resolver} stopped answering ({e})")
    return checks.results


def _is_ip(x: str) -> bool:
    try:
        ipaddress.ip_address(x)
    except ValueError:
        return False
    return True
