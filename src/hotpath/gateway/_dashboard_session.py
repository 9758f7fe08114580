"""Dashboard sessions: the admin key, shown once, traded for a signed cookie.

A browser cannot add the admin key to every request as a header, so the sign-in
form posts it once (``POST /dashboard``) and the answer sets a cookie holding a
session token::

    v1.<expiry>.<base64url HMAC-SHA256(secret, "hotpath-dashboard|v1|<expiry>|<admin digest>")>

- The token is not the key and reveals nothing of it: it is a MAC over an expiry
  time, under a random secret that has nothing to do with the key.
- It is valid until its expiry (12 hours after sign-in), checked on every request.
- It binds the admin key's digest: a new admin key ends every session.
- The secret is 32 random bytes made when the gateway starts, so a restart ends
  every session. With several worker processes the first one to start writes it
  to the run's private ``PROMETHEUS_MULTIPROC_DIR`` (a 0600 file) and the others
  read it there, so a cookie works whichever worker answers.
- The cookie is ``HttpOnly`` (no script reads it), ``SameSite=Strict`` (no other
  site's page makes the browser send it), scoped to ``/dashboard``, and
  ``Secure`` when the request came over HTTPS.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import logging
import os
import secrets

from hotpath._clock import Clock
from hotpath._errors import ConfigError

__all__ = ["COOKIE", "Sessions", "cookie_header", "cookie_value", "load_secret"]

log = logging.getLogger("hotpath.gateway")

COOKIE = "hotpath_dashboard"
SECRET_FILE = "hotpath-dashboard.secret"  # noqa: S105 - a file name, not a secret
_SECRET_BYTES = 32


def load_secret(directory: str | None) -> bytes:
    """The signing secret: new random bytes, or with ``directory`` (the workers'
    shared metrics directory) the ones the first worker left there."""
    if not directory:
        return secrets.token_bytes(_SECRET_BYTES)
    path = os.path.join(directory, SECRET_FILE)
    try:
        found = _read(path)
        if found is not None:
            return found
        fresh = secrets.token_bytes(_SECRET_BYTES)
        # Written aside then linked into place: link fails if another worker won
        # the race, and a reader never sees a half-written file.
        temporary = f"{path}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, fresh)
        finally:
            os.close(fd)
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass
        finally:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
        found = _read(path)
        if found is not None:
            return found
    except OSError as exc:
        log.warning(
            "dashboard: cannot share the session secret through %s (%s): a session "
            "then works on the worker that opened it only",
            directory,
            exc,
        )
    return secrets.token_bytes(_SECRET_BYTES)


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None
    return data if len(data) == _SECRET_BYTES else None


class Sessions:
    """Issues and checks session tokens for the admin key whose SHA-256 is
    ``digest``."""

    def __init__(
        self, digest: str, secret: bytes, *, clock: Clock, lifetime: float = 12 * 3600
    ) -> None:
        if len(secret) < 16:
            raise ConfigError(f"secret must be at least 16 bytes, got {len(secret)}")
        if not lifetime > 0:
            raise ConfigError(f"lifetime must be > 0 seconds, got {lifetime!r}")
        self._digest = digest.encode()
        self._secret = secret
        self._clock = clock
        self.lifetime = lifetime

    def __repr__(self) -> str:
        return f"Sessions(lifetime={self.lifetime!r})"

    def _mac(self, expiry: bytes) -> bytes:
        message = b"hotpath-dashboard|v1|" + expiry + b"|" + self._digest
        mac = hmac.new(self._secret, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=")

    def issue(self) -> str:
        """A new token, valid for ``lifetime`` seconds."""
        expiry = str(int(self._clock.now() + self.lifetime)).encode()
        return (b"v1." + expiry + b"." + self._mac(expiry)).decode()

    def expiry(self, token: str) -> float | None:
        """When ``token`` expires (seconds since the epoch), or ``None`` if it is
        forged, damaged or expired."""
        version, _, rest = token.encode("latin-1", "replace").partition(b".")
        expiry, _, mac = rest.partition(b".")
        if version != b"v1" or not expiry.isdigit() or len(expiry) > 12:
            return None
        if not hmac.compare_digest(mac, self._mac(expiry)):
            return None
        until = float(expiry)
        return until if until > self._clock.now() else None


def cookie_header(token: str, *, max_age: float, secure: bool) -> bytes:
    """The ``Set-Cookie`` value that holds ``token`` (see the module docstring)."""
    parts = [
        f"{COOKIE}={token}",
        "Path=/dashboard",
        f"Max-Age={int(max_age)}",
        "HttpOnly",
        "SameSite=Strict",
    ]
    if secure:
        parts.append("Secure")
    return "; ".join(parts).encode()


def cookie_value(header: bytes | None) -> str | None:
    """The session cookie's value in a ``Cookie`` request header, if any."""
    if not header:
        return None
    for part in header.decode("latin-1").split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name == COOKIE:
            return value.strip().strip('"')
    return None
