"""Redis tier URLs: which parameters are hotpath's, which go to redis-py, and redaction."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from hotpath.cache._urls import parse_float, parse_int, parse_options

__all__ = ["OWN_PARAMS", "PASS_PARAMS", "SCHEMES", "redact", "split_url"]

SCHEMES = frozenset({"redis", "rediss", "unix"})
# Query parameters hotpath reads itself (stripped before redis-py sees the URL) ...
_PARSERS: dict[str, Callable[[str, str], Any]] = {
    "prefix": lambda text, _name: text,
    "timeout": parse_float,
    "connect_timeout": parse_float,
    "max_connections": parse_int,
}
OWN_PARAMS = frozenset(_PARSERS)
# ... and the connection parameters handed on to redis-py untouched.
PASS_PARAMS = frozenset(
    {
        "db",
        "password",
        "ssl_ca_certs",
        "ssl_certfile",
        "ssl_keyfile",
        "ssl_cert_reqs",
        "ssl_check_hostname",
    }
)


def split_url(url: str) -> tuple[str, dict[str, Any]]:
    """``(connection URL for redis-py, RedisTier keyword arguments)`` from a tier URL."""
    kwargs = parse_options(redact(url), _PARSERS, passed_on=PASS_PARAMS)
    # Rebuilt by hand: urlunsplit() would turn unix:///path into unix:/path.
    base, _, query = url.partition("?")
    rest = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k in PASS_PARAMS]
    conn_url = f"{base}?{urlencode(rest)}" if rest else base
    return conn_url, kwargs


def redact(url: str) -> str:
    """``url`` with its password (in the userinfo or a ``password=`` parameter) hidden."""
    base, sep, query = url.partition("?")
    try:
        netloc = urlsplit(base).netloc
        if urlsplit(base).password is not None:
            user, _, host = netloc.rpartition("@")
            base = base.replace(netloc, f"{user.partition(':')[0]}:***@{host}", 1)
    except ValueError:
        return "<unparseable URL>"
    if "password=" in query:
        query = "&".join(
            "password=***" if p.startswith("password=") else p for p in query.split("&")
        )
    return base + sep + query
