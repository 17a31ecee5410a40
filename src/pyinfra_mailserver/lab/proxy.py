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
FreshIndexMaxAge: {fresh}
"""
# How long a volatile index (InRelease) is served from the cache without asking the mirror again. acng's
# default (27 s) had every wave of hosts deploying at once refresh the same InRelease concurrently; acng
# then collided with itself ("Failure to move file ... out of the way", the backup's name being the
# current second) and some clients' `apt-get update` hung for good (apt-get and both of its methods idle,
# the http method's socket in CLOSE-WAIT): 1 to 3 hosts of every 5 in trials. A throwaway lab can live
# with an index up to an hour old; warm() fetches it once, alone, before the hosts boot.
FRESH_INDEX_MAX_AGE = 3600


def proxy_cache_dir(st: LabState) -> Path:
    """Downloaded packages survive `lab down` (one dir per bridge: two acng must not share a cache)."""
    images = cache_dir_from_env()
    base = images.parent if images.name == "images" else DEFAULT_CACHE_DIR.parent
    return base / "apt" / st.bridge


def ensure_proxy(st: LabState) -> None:
    """Start apt-cacher-ng on the bridge address unless the one this lab started is still running."""
    if st.proxy and st.proxy.alive():
        return
    st.proxy = None
    conf_dir = st.state_dir / "proxy"
    log_dir = conf_dir / "log"
    cache = proxy_cache_dir(st)
    for d in (conf_dir, log_dir, cache):
        d.mkdir(parents=True, exist_ok=True)
    st.proxy_port = _free_port(st.bridge_ip)
    (conf_dir / "acng.conf").write_text(
        ACNG_CONF.format(cache=cache, log=log_dir, port=st.proxy_port, bind=st.bridge_ip,
                         fresh=FRESH_INDEX_MAX_AGE)
    )
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


def index_urls(sources_list: str) -> list[str]:
    """The InRelease URL of every http suite in a one-line-style sources.list (https bypasses the proxy)."""
    urls: list[str] = []
    for line in sources_list.splitlines():
        parts = line.split("#", 1)[0].split()
        if len(parts) >= 3 and parts[0] == "deb":
            uri, suite = (parts[2], parts[3]) if parts[1].startswith("[") else (parts[1], parts[2])
            if uri.startswith("http://"):
                urls.append(f"{uri.rstrip('/')}/dists/{suite}/InRelease")
    return list(dict.fromkeys(urls))


def warm(st: LabState, sources_list: str, timeout: float = 60) -> None:
    """Fetch each suite's InRelease through the proxy, one after the other, so the hosts that then run
    `apt-get update` at once are all served the cached copy (see FRESH_INDEX_MAX_AGE). Best effort: a
    failure is printed and the lab still comes up (apt on the hosts says what is wrong, if anything)."""
    import urllib.request

    if not st.proxy:
        return
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": st.proxy_url}))
    for url in index_urls(sources_list):
        try:
            with opener.open(url, timeout=timeout) as r:
                r.read()
        except OSError as e:
            print(f"lab: apt proxy warm-up of {url} failed: {e}")


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
