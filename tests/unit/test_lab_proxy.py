"""The lab's apt proxy: its configuration and the index warm-up, without any network."""

from __future__ import annotations

from pyinfra_mailserver.lab import proxy


def test_index_urls_are_the_http_suites_inrelease() -> None:
    sources = "\n".join([
        "# the lab image's sources",
        "deb http://deb.debian.org/debian bookworm main",
        "deb http://deb.debian.org/debian/ bookworm-updates main",
        "deb [arch=amd64] http://deb.debian.org/debian-security bookworm-security main",
        "deb-src http://deb.debian.org/debian bookworm main",
        "deb https://example.org/debian bookworm main",  # https bypasses the proxy: nothing to warm
        "deb http://deb.debian.org/debian bookworm contrib",  # same suite: fetched once
    ])
    assert proxy.index_urls(sources) == [
        "http://deb.debian.org/debian/dists/bookworm/InRelease",
        "http://deb.debian.org/debian/dists/bookworm-updates/InRelease",
        "http://deb.debian.org/debian-security/dists/bookworm-security/InRelease",
    ]


def test_volatile_indexes_stay_fresh_for_a_wave_of_hosts() -> None:
    """acng's 27-second default let concurrent `apt-get update`s refresh one InRelease together, which
    hung some of them; the lab freezes indexes long enough for every wave of a run."""
    conf = proxy.ACNG_CONF.format(cache="/c", log="/l", port=3142, bind="10.0.0.1",
                                  fresh=proxy.FRESH_INDEX_MAX_AGE)
    assert f"FreshIndexMaxAge: {proxy.FRESH_INDEX_MAX_AGE}" in conf.splitlines()
    assert proxy.FRESH_INDEX_MAX_AGE >= 1800
