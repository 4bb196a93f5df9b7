"""Signed tokens, session cookies, CSRF tokens and login throttling for the dashboard.

* The JSON API takes ``Authorization: Bearer <token>`` (0.26): the token of ``POST /api/v1/login``, a signature
  over ``{"u": username}`` (salt ``chancy.api.token``) valid for 7 days.
* The pages use a session cookie (HttpOnly, SameSite=Lax, scoped to the dashboard's path, Secure over HTTPS)
  holding a signature over ``{"u": username, "c": csrf}``, valid for 12 hours. Every state-changing request made
  with the cookie must carry ``csrf`` (form field ``csrf_token`` or header ``X-CSRF-Token``), compared in constant
  time; a request the browser marks as cross-site (``Sec-Fetch-Site``) is refused whatever it carries. The login
  form itself is protected by a double-submit cookie.
* Tokens and cookies are stateless: logging out drops the cookie, and a copied cookie or token stays valid until
  it expires. Without a ``secret_key`` each process makes a random one, so tokens end with the process.
"""

from __future__ import annotations

import dataclasses
import hmac
import secrets
import time
from collections import deque
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer

TOKEN_MAX_AGE = 7 * 86400
SESSION_MAX_AGE = 12 * 3600
SESSION_COOKIE = "chancy_lite_session"
LOGIN_COOKIE = "chancy_lite_login"
FLASH_COOKIE = "chancy_lite_flash"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
LOGIN_FAILURES = 10  # per client address...
LOGIN_WINDOW = 300.0  # ...within this many seconds, after which its logins are refused until the window passes


@dataclasses.dataclass(frozen=True)
class User:
    """Who made a request, and how: ``"token"`` (bearer), ``"session"`` (cookie, with its ``csrf``) or ``"open"``
    (no login required: a read-only dashboard)."""

    name: str
    via: str
    csrf: str = ""


class Signer:
    """Signs and checks tokens, sessions and flash messages with one secret."""

    def __init__(self, secret_key: str | bytes | None) -> None:
        secret = secret_key if secret_key else secrets.token_urlsafe(32)
        self._tokens = URLSafeTimedSerializer(secret, salt="chancy.api.token")
        self._sessions = URLSafeTimedSerializer(secret, salt="chancy_lite.session")
        self._flash = URLSafeTimedSerializer(secret, salt="chancy_lite.flash")

    def token(self, username: str) -> str:
        return self._tokens.dumps({"u": username})

    def check_token(self, token: str) -> str | None:
        data = _loads(self._tokens, token, TOKEN_MAX_AGE)
        return data.get("u") if isinstance(data, dict) and isinstance(data.get("u"), str) else None

    def session(self, username: str) -> tuple[str, str]:
        """A new session cookie value for ``username`` and its CSRF token."""
        csrf = secrets.token_urlsafe(24)
        return self._sessions.dumps({"u": username, "c": csrf}), csrf

    def check_session(self, value: str) -> User | None:
        data = _loads(self._sessions, value, SESSION_MAX_AGE)
        if isinstance(data, dict) and isinstance(data.get("u"), str) and isinstance(data.get("c"), str):
            return User(data["u"], "session", data["c"])
        return None

    def flash(self, text: str, kind: str) -> str:
        return self._flash.dumps([text, kind])

    def check_flash(self, value: str) -> tuple[str, str] | None:
        data = _loads(self._flash, value, 600)
        if isinstance(data, list) and len(data) == 2 and all(isinstance(x, str) for x in data):
            return data[0], data[1]
        return None


def _loads(serializer: URLSafeTimedSerializer, value: str, max_age: int) -> Any:
    try:
        return serializer.loads(value, max_age=max_age)
    except (BadSignature, ValueError, TypeError):
        return None


def same_secret(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a submitted CSRF token with the expected one."""
    return bool(given) and bool(expected) and hmac.compare_digest(str(given).encode(), expected.encode())


class LoginThrottle:
    """At most ``LOGIN_FAILURES`` failed logins per client address within ``LOGIN_WINDOW`` seconds."""

    def __init__(self, failures: int = LOGIN_FAILURES, window: float = LOGIN_WINDOW) -> None:
        self.failures = failures
        self.window = window
        self._seen: dict[str, deque[float]] = {}

    def blocked(self, client: str, now: float | None = None) -> bool:
        times = self._recent(client, time.monotonic() if now is None else now)
        return len(times) >= self.failures

    def failed(self, client: str, now: float | None = None) -> None:
        at = time.monotonic() if now is None else now
        self._recent(client, at).append(at)
        if len(self._seen) > 10_000:  # many addresses: forget the quiet ones
            for key in [k for k, v in self._seen.items() if not v or v[-1] < at - self.window]:
                del self._seen[key]

    def _recent(self, client: str, now: float) -> deque[float]:
        times = self._seen.setdefault(client, deque())
        while times and times[0] < now - self.window:
            times.popleft()
        return times
