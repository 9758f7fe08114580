"""The live dashboard: ``GET /dashboard`` and its event stream ``GET /dashboard/events``.

:class:`DashboardSampler` reads the gateway's own Prometheus metrics every
``interval`` seconds (with several workers, the multiprocess view summed over all
of them, as ``/metrics`` does) and keeps the last ``history`` points: rates per
second and the quantiles of each interval (:mod:`._dashboard_series`,
:mod:`._dashboard_sampler`). The page is plain HTML, CSS and JavaScript drawing
inline SVG, with no build step and nothing fetched from elsewhere. It comes with
the points held so far, then follows new ones as server-sent events.

Both routes need the admin key. A browser without a session gets a 401 with a
sign-in form, which posts the key once to ``POST /dashboard`` (in the body, never
in a URL, where it would land in proxies' logs and the browser's history); the
answer is a session cookie (:mod:`._dashboard_session`) and a redirect to the
page. Scripts may send the admin API's ``Authorization: Bearer`` header to both
routes instead.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import math
import os
from importlib import resources
from typing import Any, NamedTuple
from urllib.parse import parse_qs

import orjson

from hotpath.gateway._admin import _query, _require_admin, admin_digest, is_admin_key
from hotpath.gateway._api_errors import ApiError
from hotpath.gateway._asgi import Request, read_body, send_bytes
from hotpath.gateway._dashboard_sampler import Sampler, SamplerStats
from hotpath.gateway._dashboard_series import DashboardPoint
from hotpath.gateway._dashboard_session import Sessions, cookie_header, cookie_value, load_secret
from hotpath.gateway._state import State

__all__ = ["DashboardPoint", "DashboardSampler", "SamplerStats"]

_HTML = b"text/html; charset=utf-8"
_KEEPALIVE = 15.0  # seconds between comments on an idle stream (proxies close silent ones)
_MAX_STREAMS = 64  # open event streams per process; more are refused with a 503
_META_EVERY = 10  # points between refreshes of the stream's meta (reading cost, ...)
_MAX_FORM = 4096  # bytes of a sign-in form's body
_FORM = b"application/x-www-form-urlencoded"


class _Page(NamedTuple):
    body: bytes
    policy: bytes  # Content-Security-Policy: only this page's own script and style


class DashboardSampler:
    """Samples ``state``'s metrics every ``interval`` seconds into a ring of the
    last ``history`` points, and serves the dashboard: :meth:`page` and
    :meth:`events` are the handlers of ``GET /dashboard`` and ``GET
    /dashboard/events``. :meth:`start` begins sampling, :meth:`aclose` stops it
    and ends the open streams.

    ``idle_interval`` is the time between readings while no dashboard is open on
    this process: by default ``interval``, or ten times that with several workers
    (each worker reads every worker's metrics file).
    """

    def __init__(
        self,
        state: State,
        *,
        interval: float = 1.0,
        history: int = 300,
        idle_interval: float | None = None,
    ) -> None:
        self._sampler = Sampler(
            state, interval=interval, history=history, idle_interval=idle_interval
        )
        self._state = state
        self._sessions: Sessions | None = None
        self._pages: dict[str, _Page] = {}

    def __repr__(self) -> str:
        s = self._sampler
        return (
            f"DashboardSampler(interval={s.interval!r}, history={s.history!r}, "
            f"idle_interval={s.idle_interval!r})"
        )

    @property
    def interval(self) -> float:
        return self._sampler.interval

    @property
    def idle_interval(self) -> float:
        return self._sampler.idle_interval

    async def start(self) -> None:
        """Make the session secret, take the first reading and begin sampling
        (idempotent)."""
        digest = self._state.admin_digest
        if digest is None:
            return  # no admin key: nobody may see the dashboard, so nothing is read
        if self._sessions is None:
            secret = load_secret(self._sampler.multiproc_dir)
            self._sessions = Sessions(digest, secret, clock=self._state.clock)
        await self._sampler.start()

    def end_streams(self) -> None:
        """End the open event streams now (the pages reconnect on their own), so
        that a server's graceful shutdown need not wait for them."""
        self._sampler.end_streams()

    async def aclose(self) -> None:
        """Stop sampling and end the open event streams."""
        await self._sampler.aclose()

    def sample(self) -> DashboardPoint | None:
        """Read the metrics now (see :meth:`Sampler.sample`)."""
        return self._sampler.sample()

    def points(self) -> list[DashboardPoint]:
        """The points held, oldest first."""
        return self._sampler.points()

    def stats(self) -> SamplerStats:
        return self._sampler.stats()

    # -- who may see it ----------------------------------------------------------------

    def _session(self, request: Request) -> float | None:
        sessions = self._sessions
        token = cookie_value(request.headers.get(b"cookie"))
        if sessions is None or token is None:
            return None
        return sessions.expiry(token)

    def _login(self, state: State, request: Request) -> tuple[float, bytes | None]:
        """Who may see the page: ``(session expiry, Set-Cookie value or None)``.
        Raises 404 with the admin API off, 401 without the admin key or a session."""
        if _bearer(request):
            _require_admin(state, request)  # 401 on a wrong key, as the admin API
            return self._new_session(request)
        admin_digest(state)  # the admin API's own 404 when it is off
        until = self._session(request)
        if until is None:
            raise _unauthorized("the dashboard needs the admin key")
        return until, None

    def _new_session(self, request: Request) -> tuple[float, bytes | None]:
        sessions = self._sessions
        if sessions is None:  # not started yet: the key lets this request in alone
            return math.inf, None
        token = sessions.issue()
        until = sessions.expiry(token) or math.inf
        secure = request.header(b"x-forwarded-proto") == "https"
        return until, cookie_header(token, max_age=sessions.lifetime, secure=secure)

    # -- the page ----------------------------------------------------------------------

    async def page(self, state: State, request: Request) -> None:
        """``GET /dashboard``: the page, or 401 with a sign-in form."""
        try:
            until, cookie = self._login(state, request)
        except ApiError as exc:
            accept = request.header(b"accept") or ""
            if exc.status != 401 or "text/html" not in accept:
                raise
            if cookie_value(request.headers.get(b"cookie")) is not None:
                note = "The session has ended: sign in again."
            else:
                note = "Sign in with the gateway's admin key."
            await self._send_page(request, "login", 401, None, note)
            return
        # The points so far come inside the page, so that it draws at once.
        history = self._sampler.history_json(orjson.dumps(self._meta(until)))
        await self._send_page(request, "index", 200, cookie, history)

    async def sign_in(self, state: State, request: Request) -> None:
        """``POST /dashboard``: the sign-in form's ``key`` field. The admin key
        answers with a session cookie and a redirect (303) to the page; another
        key, with the form again (401) saying so."""
        digest = admin_digest(state)  # the admin API's own 404 when it is off
        kind = (request.headers.get(b"content-type") or b"").split(b";")[0].strip().lower()
        if kind != _FORM:
            raise ApiError(
                415,
                "the dashboard's sign-in takes a form (application/x-www-form-urlencoded) "
                f"with a 'key' field, got content-type {kind.decode('latin-1')!r}",
                code="unsupported_media_type",
            )
        body = await read_body(request, _MAX_FORM)
        key = parse_qs(body.decode("utf-8", "replace")).get("key", [""])[0].strip()
        if not key or not is_admin_key(digest, key.encode()):
            await self._send_page(request, "login", 401, None, "That is not the admin key.")
            return
        _, cookie = self._new_session(request)
        headers = [(b"location", b"dashboard"), (b"cache-control", b"no-store")]
        if cookie is not None:
            headers.append((b"set-cookie", cookie))
        await send_bytes(request.send, 303, b"", headers, content_type=_HTML)

    async def _send_page(
        self, request: Request, name: str, status: int, cookie: bytes | None, fill: str | bytes
    ) -> None:
        """The page ``name`` with its ``@@FILL@@`` replaced: a note (text) on the
        sign-in page, the history (JSON) on the dashboard."""
        page = self._pages.get(name) or self._pages.setdefault(name, _build(name))
        if isinstance(fill, str):
            text = _escape(fill).encode()
        else:
            # Inside <script type="application/json">: no "<" may end the element.
            text = fill.replace(b"<", b"\\u003c").replace(b">", b"\\u003e")
        headers = [
            (b"content-security-policy", page.policy),
            (b"cache-control", b"no-store"),
            (b"referrer-policy", b"no-referrer"),
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
        ]
        if cookie is not None:
            headers.append((b"set-cookie", cookie))
        body = page.body.replace(b"@@FILL@@", text)
        await send_bytes(request.send, status, body, headers, content_type=_HTML)

    def _meta(self, until: float) -> dict[str, Any]:
        s = self._sampler
        return {
            "interval": s.interval,
            "idle_interval": s.idle_interval,
            "history": s.history,
            "scope": "all workers" if s.multiproc_dir is not None else "this process",
            "pid": os.getpid(),
            "run": s.run,
            "seq": s.seq,
            "upstreams": [u.name for u in self._state.config.upstreams],
            "sample_cost_us": round(s.stats().median_cost * 1e6, 1),
            "session_expires": None if math.isinf(until) else until,
        }

    # -- the event stream --------------------------------------------------------------

    async def events(self, state: State, request: Request) -> None:
        """``GET /dashboard/events``: the points held (unless the client has them),
        then each new one, as server-sent events, until the client leaves, its
        session ends or the sampler closes."""
        if _bearer(request):
            _require_admin(state, request)
            until = math.inf
        else:
            admin_digest(state)  # the admin API's own 404 when it is off
            found = self._session(request)
            if found is None:
                raise _unauthorized("the dashboard needs the admin key (or its session cookie)")
            until = found
        sampler = self._sampler
        if sampler.streams >= _MAX_STREAMS:
            raise ApiError(
                503, f"too many open dashboards (at most {_MAX_STREAMS})", type="server_error"
            )
        sampler.streams += 1
        sampler.watched()
        try:
            await self._stream(request, until)
        finally:
            sampler.streams -= 1

    async def _stream(self, request: Request, until: float) -> None:
        sampler, send, clock = self._sampler, request.send, self._state.clock
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream; charset=utf-8"),
                    (b"cache-control", b"no-store"),
                    (b"x-accel-buffering", b"no"),  # nginx: pass each event on at once
                ],
            }
        )
        # A reconnecting EventSource says where it was; the page, what it came with.
        mark = request.headers.get(b"last-event-id") or _query(request).get("after", "").encode()
        last = sampler.resume_from(mark)
        first = b"retry: 2000\n\n"
        if last is None:
            last = sampler.seq
            history = sampler.history_json(orjson.dumps(self._meta(until)))
            first += b"id: %s-%d\nevent: history\ndata: %s\n\n" % (
                sampler.run.encode(),
                last,
                history,
            )
        await send({"type": "http.response.body", "body": first, "more_body": True})
        gone = asyncio.get_running_loop().create_task(_disconnected(request))
        sent = 0
        try:
            while not sampler.closed:
                left = until - clock.now()
                if left <= 0:
                    body = b"event: expired\ndata: {}\n\n"
                    await send({"type": "http.response.body", "body": body, "more_body": True})
                    break
                tick = sampler.next_tick()
                done, _ = await asyncio.wait(
                    (gone, tick), timeout=min(left, _KEEPALIVE), return_when=asyncio.FIRST_COMPLETED
                )
                if gone in done:
                    return
                chunk, last, count = sampler.since(last)
                if not chunk and tick in done:
                    continue  # a reading without a new point
                sent += count
                if sent >= _META_EVERY:
                    sent = 0
                    chunk += b"event: meta\ndata: " + orjson.dumps(self._meta(until)) + b"\n\n"
                # With nothing new for a while, a comment keeps proxies from closing.
                await send(
                    {"type": "http.response.body", "body": chunk or b": \n\n", "more_body": True}
                )
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            gone.cancel()


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _unauthorized(message: str) -> ApiError:
    return ApiError(
        401,
        f"{message}: open /dashboard in a browser and sign in with the admin key once "
        "(a session cookie then stands for it), or send 'Authorization: Bearer <admin key>'",
        type="invalid_request_error",
        code="invalid_api_key",
    )


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _asset(name: str) -> str:
    return resources.files("hotpath.gateway").joinpath("dashboard", name).read_text("utf-8")


def _build(name: str) -> _Page:
    """The page ``name``.html with its script and the stylesheet inlined, and the
    Content-Security-Policy that admits exactly those two, by hash."""
    script = _asset("app.js") if name == "index" else None  # the sign-in is a plain form
    style = _asset("style.css")
    html = _asset(f"{name}.html").replace("@@STYLE@@", style)
    if script is not None:
        html = html.replace("@@SCRIPT@@", script)

    def digest(text: str) -> str:
        return base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()

    scripts = "'none'" if script is None else f"'sha256-{digest(script)}'"
    policy = (
        "default-src 'none'; "
        f"script-src {scripts}; "
        f"style-src 'sha256-{digest(style)}'; "
        "connect-src 'self'; img-src 'self' data:; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
    return _Page(html.encode(), policy.encode())


def _bearer(request: Request) -> bool:
    """Whether the request brings a key as a ``Bearer`` token. Another scheme (a
    proxy's basic auth in front of the gateway) is not ours: the session cookie
    decides then."""
    return request.headers.get(b"authorization", b"")[:7].lower() == b"bearer "
