"""Who may use the dashboard and the HTTP API: authentication backends (Chancy's names).

A backend checks a username and a password at login; what follows (the session cookie of the pages, the bearer
token of the JSON API, their signatures and lifetimes) is the dashboard's own business (``chancy_lite.web``). Write
your own by subclassing :class:`AuthBackend` (check against your user database, an LDAP server, ...).

There is no default password. :class:`SimpleAuthBackend` takes the users and passwords you give it, or
:meth:`SimpleAuthBackend.from_env` reads one from ``CHANCY_LITE_WEB_USERNAME`` (default ``admin``) and
``CHANCY_LITE_WEB_PASSWORD``.

Nothing here imports the web extra, so configuring an app with an ``Api`` plugin works without it installed.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping
from typing import Any

from chancy_lite.errors import ConfigurationError

USERNAME_ENV = "CHANCY_LITE_WEB_USERNAME"
PASSWORD_ENV = "CHANCY_LITE_WEB_PASSWORD"


class AuthBackend:
    """Checks credentials at login. ``request`` is the Starlette request (for a backend that wants the client's
    address or headers); the default ``logout`` does nothing."""

    async def login(self, request: Any, username: str, password: str) -> bool:
        """True when ``username`` may log in with ``password``."""
        raise NotImplementedError

    async def logout(self, request: Any) -> None:
        """Called when a user logs out of the pages (the session cookie is dropped whatever this does)."""


class SimpleAuthBackend(AuthBackend):
    """Users and passwords held in memory, as Chancy's: ``SimpleAuthBackend({"admin": "a long password"})``.

    Passwords are compared in constant time (through their SHA-256 digests, so neither their content nor their
    length shows in the timing). An empty set of users, an empty username or an empty password is refused with
    ``ConfigurationError``.
    """

    def __init__(self, users: Mapping[str, str]) -> None:
        if not isinstance(users, Mapping) or not users:
            raise ConfigurationError(
                "SimpleAuthBackend needs at least one user: SimpleAuthBackend({'admin': '<a password>'})"
            )
        self._digests: dict[str, bytes] = {}
        for username, password in users.items():
            if not isinstance(username, str) or not username:
                raise ConfigurationError("SimpleAuthBackend: every username must be a non-empty string")
            if not isinstance(password, str) or not password:
                raise ConfigurationError(f"SimpleAuthBackend: user {username!r} has an empty password")
            self._digests[username] = _digest(password)
        self._nobody = _digest(os.urandom(16).hex())

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SimpleAuthBackend | None:
        """One user from ``CHANCY_LITE_WEB_PASSWORD`` (and ``CHANCY_LITE_WEB_USERNAME``, default ``admin``), or
        None when no password is set."""
        env = os.environ if environ is None else environ
        password = env.get(PASSWORD_ENV, "")
        if not password:
            return None
        return cls({env.get(USERNAME_ENV, "") or "admin": password})

    @property
    def usernames(self) -> list[str]:
        return sorted(self._digests)

    async def login(self, request: Any, username: str, password: str) -> bool:
        expected = self._digests.get(username)
        matches = hmac.compare_digest(_digest(password), expected if expected is not None else self._nobody)
        return matches and expected is not None


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
