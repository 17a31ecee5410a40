"""The lab's apt proxy: an apt-cacher-ng bound to the bridge address, the hosts' only way to packages."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

from .state import DEFAULT_CACHE_DIR, LabError, LabState, ProcRef, cache_dir_from_env
from .util import tcp_open, tool, wait_for

# Minimal on purpose: the stock acng.conf remap rules answered 503 or stalled in trials; as a plain
# caching proxy it forwards whatever mirror the hosts' sources name (the machine's own mirror).
ACNG_CONF = """\
# pyinfra-mailserver lab apt proxy (generated)
CacheDir: {cache}
LogDir: {log}
SupportDir: /usr/lib/apt-cacher-ng
Port: {port}
BindAddress: {bind}
ForeGround: 1
ExThreshold: 4
NetworkTimeout: 30
DlMaxRetries: 5
ResponseFreezeDetectTime: {freeze}
"""
# Hosts that run `apt-get update` at the same moment (a deploy of several fresh hosts) ask acng for the
# same InRelease at once. acng (3.7.4, Debian 12) refreshes a volatile index on every request and lets
# concurrent requests share one download, but only once that download is "started": a download that is
# still waiting for the mirror's headers has a start time of 0, so any request arriving in that window
# takes it for stuck (older than ResponseFreezeDetectTime), abandons it under the client that asked for
# it and starts over, renaming the cached file to `InRelease.<current second>`; a second such request in
# the same second fails ("Failure to move file ... out of the way ... File exists", "Error creating file
# item") and answers that client 503. apt 2.6 hangs for good on a 503 for an InRelease (its delayed retry
# never starts: apt-get and both its methods idle, the http socket in CLOSE-WAIT, no timeout fires; the
# same with a stand-in proxy answering just that 503). A freeze time above the current Unix time means
# an active download is never taken for stuck, so a wave of requests always shares one download. INT_MAX
# (acng keeps it in an int) holds until 2038; nothing else in acng reads it (acregistry.cc), and a lab
# has no slow clients to protect against.
RESPONSE_FREEZE_DETECT_TIME = 2**31 - 1


def acng_conf(cache: Path | str, log: Path | str, port: int, bind: str) -> str:
    """The lab's acng.conf."""
    return ACNG_CONF.format(cache=cache, log=log, port=port, bind=bind, freeze=RESPONSE_FREEZE_DETECT_TIME)


def proxy_cache_dir(st: LabState) -> Path:
    """Downloaded packages survive `lab down` (one dir per bridge: two acng must not share a cache)."""
    images = cache_dir_from_env()
    base = images.parent if images.name == "images" else DEFAULT_CACHE_DIR.parent
    return base / "apt" / st.bridge


def ensure_proxy(st: LabState) -> None:
    """Start apt-cacher-ng on the bridge address unless the one this lab started is still running. One
    running with an outdated acng.conf (started by an older version of the lab) is restarted when no
    host of the lab is up to lose a download, and reported otherwise."""
    conf_dir = st.state_dir / "proxy"
    log_dir = conf_dir / "log"
    cache = proxy_cache_dir(st)
    if st.proxy and st.proxy.alive():
        conf = conf_dir / "acng.conf"
        want = acng_conf(cache, log_dir, st.proxy_port, st.bridge_ip)
        if conf.is_file() and conf.read_text() == want:
            return
        if any(h.alive() for h in st.hosts.values()):
            print(f"lab: the apt proxy runs with an outdated {conf}; `mailserver lab down` and `up` apply it")
            return
        stop_proxy(st)
    st.proxy = None
    for d in (conf_dir, log_dir, cache):
        d.mkdir(parents=True, exist_ok=True)
    st.proxy_port = _free_port(st.bridge_ip)
    (conf_dir / "acng.conf").write_text(acng_conf(cache, log_dir, st.proxy_port, st.bridge_ip))
    with open(log_dir / "stdout.log", "ab") as out:
        proc = subprocess.Popen(
            [tool("apt-cacher-ng"), "-c", str(conf_dir)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # not killed with the terminal that ran `lab up`
        )
    st.proxy = ProcRef.of(proc.pid)
    st.save()
    try:
        wait_for(
            f"apt-cacher-ng on {st.bridge_ip}:{st.proxy_port}",
            lambda: tcp_open(st.bridge_ip, st.proxy_port) or _died(proc),
            timeout=15,
        )
    except LabError:
        stop_proxy(st)
        raise
    if proc.poll() is not None:
        st.proxy = None
        st.save()
        raise LabError(f"apt-cacher-ng exited ({proc.returncode}); see {log_dir}")


def _free_port(ip: str, first: int = 3142, tries: int = 50) -> int:
    """3142 (apt-cacher-ng's usual port) unless taken, e.g. by a system-wide apt-cacher-ng on 0.0.0.0."""
    for port in range(first, first + tries):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as acng does: TIME_WAIT is fine
            try:
                s.bind((ip, port))
            except OSError:
                continue
            return port
    raise LabError(f"no free port for the apt proxy on {ip} ({first}-{first + tries - 1})")


def _died(proc: subprocess.Popen[bytes]) -> bool:
    return proc.poll() is not None


def stop_proxy(st: LabState, timeout: float = 10) -> None:
    """Stop the proxy by its recorded PID (and only if that PID is still the process we started)."""
    ref = st.proxy
    if ref and ref.alive():
        os.kill(ref.pid, signal.SIGTERM)
        try:
            wait_for("apt-cacher-ng to exit", lambda: not ref.alive(), timeout=timeout)
        except LabError:
            if ref.alive():
                os.kill(ref.pid, signal.SIGKILL)
                wait_for("apt-cacher-ng to die", lambda: not ref.alive(), timeout=5)
    st.proxy = None
