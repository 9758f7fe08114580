"""``hotpath spend``: the usage ledger's spend report on the command line.

The report reads the store the gateway books usage in: ``--store``, else the
config's ``[cost] store``, else the Redis of the config (``traffic.redis_url``
or the cache's first Redis tier), else ``sqlite:///.hotpath/usage.db``; with
the gateway's key prefix (``cache.namespace``). It prints the table of
:func:`hotpath.cost.spend_table`, or with ``--json`` the document
``GET /admin/spend`` answers (:func:`spend_document`).

Exit codes: 0 done; 2 a bad flag, config or store URL, or no usage file yet;
1 the store cannot be read. Each error is one line on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import re
import sys
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from hotpath.cost._ledger import LedgerStore
    from hotpath.gateway._config import GatewayConfig

__all__ = ["add_parser", "run", "usage_store_url"]

_DIMENSIONS: Final = ("day", "key", "tenant", "model", "deployment")  # = cost.DIMENSIONS
_FILTERS: Final = ("key", "tenant", "model", "deployment")
_DAY_RE: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")
_PROG: Final = "hotpath spend"


class _ExitError(Exception):
    """Stop with this one-line message and exit ``code``: 2 for a bad flag, config
    or store URL (the default), 1 for a store that cannot be read."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``hotpath spend`` to the subcommands ``sub``."""
    spend = sub.add_parser(
        "spend",
        help="print spend, tokens and cache savings from the usage ledger",
        description="Print spend, tokens, requests and cache savings from the usage store "
        "the gateway books in (--store, else the config's [cost] store, else its Redis, "
        "else sqlite:///.hotpath/usage.db).",
    )
    spend.add_argument("--config", help="the gateway's TOML config (default: $HOTPATH_CONFIG)")
    spend.add_argument(
        "--store", metavar="URL", help="usage store URL: sqlite:///path or redis://..."
    )
    spend.add_argument(
        "--by",
        default="model",
        help=f"comma-separated dimensions to group by: {','.join(_DIMENSIONS)} (default model)",
    )
    spend.add_argument("--since", metavar="YYYY-MM-DD", help="first UTC day, inclusive")
    spend.add_argument("--until", metavar="YYYY-MM-DD", help="last UTC day, inclusive")
    for name in _FILTERS:
        spend.add_argument(f"--{name}", metavar=name[0].upper(), help=f"only this {name}")
    spend.add_argument(
        "--json", action="store_true", help="print the JSON document GET /admin/spend answers"
    )


def usage_store_url(config: GatewayConfig) -> tuple[str, str]:
    """The usage store the gateway of ``config`` books in, and where that URL comes
    from (``cost.store``, ``traffic.redis_url``, ``cache.tiers`` or ``default``);
    the same choice as :class:`~hotpath.gateway._cost.GatewayCost`."""
    from hotpath.gateway._cost import DEFAULT_USAGE_STORE

    if config.cost.store:
        return config.cost.store, "cost.store"
    # As Traffic: traffic.redis_url = "" keeps traffic state (and usage) off Redis.
    if config.traffic.redis_url is not None:
        if config.traffic.redis_url:
            return config.traffic.redis_url, "traffic.redis_url"
    elif config.cache.enabled and config.cache.redis_url:
        return config.cache.redis_url, "cache.tiers"
    return DEFAULT_USAGE_STORE, "default"


def run(args: argparse.Namespace) -> int:
    """Print the report ``args`` ask for; the exit code."""
    try:
        text = asyncio.run(_report(args))
    except _ExitError as exc:
        print(f"{_PROG}: {exc}", file=sys.stderr)
        return exc.code
    sys.stdout.write(text)
    return 0


def _by(text: str) -> tuple[str, ...]:
    names = tuple(p.strip() for p in text.split(",") if p.strip())
    if not names:
        raise _ExitError(f"--by must name one or more of {', '.join(_DIMENSIONS)}, got {text!r}")
    for name in names:
        if name not in _DIMENSIONS:
            raise _ExitError(
                f"--by: unknown dimension {name!r} in {text!r} (known: {', '.join(_DIMENSIONS)})"
            )
    if len(set(names)) != len(names):
        raise _ExitError(f"--by names a dimension twice: {text!r}")
    return names


def _day(text: str | None, flag: str) -> str | None:
    if text is None:
        return None
    if _DAY_RE.match(text):
        try:
            return dt.date.fromisoformat(text).isoformat()
        except ValueError:
            pass
    raise _ExitError(f"{flag} must be a date YYYY-MM-DD (UTC), got {text!r}")


def _store(args: argparse.Namespace) -> tuple[LedgerStore, str, str]:
    """The ledger store to read, its (redacted) URL, and the flag or config key
    that named it."""
    from hotpath._errors import ConfigError
    from hotpath.cache._redis_url import redact
    from hotpath.cost._ledger import open_ledger_store
    from hotpath.cost._ledger_stores import SqliteLedgerStore
    from hotpath.gateway._config_load import load_config

    try:
        config = load_config(args.config, env=os.environ)
    except ConfigError as exc:
        raise _ExitError(f"bad configuration: {exc}") from None
    if args.store is not None:
        url, source = args.store, "--store"
    else:
        url, source = usage_store_url(config)
    shown = redact(url)
    if url.lower().startswith("memory:"):
        raise _ExitError(
            f"{source} {shown!r}: a memory:// store lives inside the gateway process; "
            "name the sqlite:/// or redis:// store it books usage in"
        )
    try:
        store = open_ledger_store(url, prefix=f"{config.cache.namespace}:")
    except ConfigError as exc:
        raise _ExitError(f"{source}: {exc}") from None
    if isinstance(store, SqliteLedgerStore) and not store.path.is_file():
        hint = (
            "the default usage store; --store or --config names another"
            if source == "default"
            else f"from {source}"
        )
        raise _ExitError(f"no usage recorded at {str(store.path)!r} yet ({hint})")
    return store, shown, source


async def _report(args: argparse.Namespace) -> str:
    from hotpath._errors import ConfigError
    from hotpath.cost._ledger import Ledger
    from hotpath.cost._prices import PriceTable
    from hotpath.cost._report import spend_table

    by = _by(args.by)
    since = _day(args.since, "--since")
    until = _day(args.until, "--until")
    if since is not None and until is not None and since > until:
        raise _ExitError(f"--since {since} is after --until {until}")
    where = {name: getattr(args, name) for name in _FILTERS if getattr(args, name) is not None}
    store, shown, source = _store(args)
    ledger = Ledger(store)
    try:
        rows = await ledger.report(by=by, since=since, until=until, where=where)
    except ConfigError as exc:  # the checks above should have caught it
        raise _ExitError(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - any store fault: one line, exit 1
        raise _ExitError(
            f"the usage store {shown} (from {source}) cannot be read: "
            f"{type(exc).__name__}: {' '.join(str(exc).split())}",
            code=1,
        ) from None
    finally:
        await ledger.aclose()
    if not args.json:
        return spend_table(rows, by)
    import orjson

    from hotpath.cost._report import spend_document

    document = spend_document(
        rows,
        by=by,
        since=since,
        until=until,
        where=where,
        prices_date=PriceTable.default().date,
    )
    return orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n"
