"""What every view of one dashboard app shares: the Chancy, the options, who is asking, and the guard that every
route goes through (login, read-only mode, CSRF)."""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from chancy_lite.errors import ConfigurationError, DatabaseBusyError, DatabaseError, MigrationsNeededError
from chancy_lite.plugins.api.auth import AuthBackend, SimpleAuthBackend
from chancy_lite.web.filters import BadRequest
from chancy_lite.web.live import Live
from chancy_lite.web.security import (
    CSRF_FIELD,
    CSRF_HEADER,
    SESSION_COOKIE,
    LoginThrottle,
    Signer,
    User,
    same_secret,
)
from chancy_lite.web.shapes import dumps

if TYPE_CHECKING:
    from chancy_lite.app import Chancy
    from chancy_lite.worker import Worker

log = logging.getLogger(__name__)
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
NO_CREDENTIALS = (
    "the dashboard needs credentials and has no default password: pass "
    "authentication_backend=SimpleAuthBackend({'admin': '<a password>'}) (create_app(..., auth=...)), or set "
    "CHANCY_LITE_WEB_PASSWORD (and CHANCY_LITE_WEB_USERNAME, default admin). To serve it without a login it must "
    "be read-only: read_only=True, login_required=False"
)


def resolve_auth(auth: AuthBackend | None, *, read_only: bool, login_required: bool) -> AuthBackend | None:
    """The backend to use, from the options or the environment; ``ConfigurationError`` when there is none and the
    dashboard is not explicitly open and read-only, or when it is asked to be open but not read-only."""
    if not login_required and not read_only:
        raise ConfigurationError(
            "login_required=False is only allowed with read_only=True: anyone who reaches the port could act on jobs"
        )
    if auth is not None and not isinstance(auth, AuthBackend):
        raise ConfigurationError(f"the authentication backend must be an AuthBackend, got {auth!r}")
    if auth is None:
        auth = SimpleAuthBackend.from_env()
    if auth is None and login_required:
        raise ConfigurationError(NO_CREDENTIALS)
    return auth


@dataclasses.dataclass
class Context:
    chancy: Chancy
    worker: Worker | None
    auth: AuthBackend | None
    signer: Signer
    read_only: bool
    login_required: bool
    live: Live
    debug: bool = False
    throttle: LoginThrottle = dataclasses.field(default_factory=LoginThrottle)
    funcs_cache: tuple[float, list[str]] | None = None

    # ------------------------------------------------------------- plugins

    def plugin(self, *identifiers: str) -> Any | None:
        for identifier in identifiers:
            plugin = self.chancy.plugins.get(identifier)
            if plugin is not None:
                return plugin
        return None

    @property
    def cron(self) -> Any | None:
        return self.plugin("chancy.cron")

    @property
    def workflows(self) -> Any | None:
        return self.plugin("chancy.workflow", "chancy.workflow_plugin")

    @property
    def metrics(self) -> Any | None:
        return self.plugin("chancy.metrics")

    # ----------------------------------------------------------------- who

    def identify(self, request: Request) -> User | None:
        """The user a request comes from: a bearer token, else the session cookie; None if neither is valid
        (an open read-only dashboard answers everyone as ``anonymous``)."""
        header = request.headers.get("authorization", "")
        if header[:7].lower() == "bearer ":
            name = self.signer.check_token(header[7:].strip())
            return User(name, "token") if name is not None else None
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            user = self.signer.check_session(cookie)
            if user is not None:
                return user
        if not self.login_required:
            return User("anonymous", "open")
        return None

    async def check_csrf(self, request: Request, user: User) -> None:
        """A state-changing request made with the session cookie must carry its CSRF token and must not come
        from another site; a bearer token needs neither (a browser never adds one by itself)."""
        if user.via != "session":
            return
        if request.headers.get("sec-fetch-site", "") == "cross-site":
            raise BadRequest("Cross-site request refused", status=403)
        given = request.headers.get(CSRF_HEADER)
        if given is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")
        ):
            form = await request.form()
            value = form.get(CSRF_FIELD)
            given = value if isinstance(value, str) else None
        if not same_secret(given, user.csrf):
            raise BadRequest("Missing or wrong CSRF token", "reload the page and try again", status=403)

    # --------------------------------------------------------------- helpers

    async def funcs(self) -> list[str]:
        """Every function name in the file, cached for 60 s (0.26 caches it likewise)."""
        cached = self.funcs_cache
        if cached is not None and time.monotonic() - cached[0] < 60:
            return cached[1]
        names = await self.chancy.run_store(self.chancy.store.distinct_funcs)
        self.funcs_cache = (time.monotonic(), names)
        return names


def root(request: Request) -> str:
    """The path the dashboard is served under ("" at the top, "/admin/jobs" when mounted there)."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(data), status_code=status, media_type="application/json", headers=headers)


Handler = Callable[[Any, Request], Awaitable[Response]]


def guarded(*, write: bool = False, page: bool = False, public: bool = False) -> Callable[[Handler], Handler]:
    """Wrap a view method: refuse who is not logged in (pages: redirect to the login form; API: 403), refuse
    writes in read-only mode and writes without their CSRF token, and turn errors into answers (422 for a bad
    request, 503 while the database is busy or not migrated)."""

    def decorate(view: Handler) -> Handler:
        @functools.wraps(view)
        async def handler(self: Any, request: Request) -> Response:
            ctx: Context = self.ctx
            try:
                if not public:
                    user = ctx.identify(request)
                    if user is None:
                        if page:
                            target = request.url.path[len(root(request)):] + (
                                "?" + request.url.query if request.url.query else "")
                            return RedirectResponse(f"{root(request)}/login?{urlencode({'next': target})}",
                                                    status_code=303)
                        return json_response({"error": "Not authenticated"}, 403)
                    request.state.user = user
                    if write or request.method in WRITE_METHODS:
                        if ctx.read_only:
                            raise BadRequest("The dashboard is read-only", status=403)
                        await ctx.check_csrf(request, user)
                return await view(self, request)
            except BadRequest as exc:
                return await self.refuse(request, exc)
            except MigrationsNeededError as exc:
                return await self.refuse(request, BadRequest("The database is not migrated", str(exc), status=503))
            except (DatabaseBusyError, DatabaseError) as exc:
                return await self.refuse(request, BadRequest("The database is unavailable", str(exc), status=503))

        return handler

    return decorate
