"""The dashboard and HTTP API of chancy_lite (``pip install 'chancy-lite[web]'``).

::

    from chancy_lite.web import create_app
    from chancy_lite.plugins.api.auth import SimpleAuthBackend

    app = create_app(chancy, auth=SimpleAuthBackend({"admin": "a long password"}))  # any ASGI server serves it

    # or inside your own Starlette / FastAPI app, under a sub-path:
    host = Starlette(routes=[Mount("/admin/jobs", app=create_app(chancy, auth=...))])

The app is Starlette, imported on first use; every URL it makes is relative to where it is mounted. The ``Api``
plugin (``chancy_lite.plugins.api``) serves it from a worker with uvicorn, and ``chancy-lite worker web`` starts
one. Routes and shapes: :mod:`chancy_lite.web.api`; pages: :mod:`chancy_lite.web.pages`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from chancy_lite.errors import MissingDependencyError

if TYPE_CHECKING:
    from chancy_lite.app import Chancy
    from chancy_lite.plugins.api.auth import AuthBackend
    from chancy_lite.worker import Worker

__all__ = ["create_app", "require_web"]

INSTALL = "pip install 'chancy-lite[web]'"


def require_web(*, server: bool = False) -> None:
    """Raise ``MissingDependencyError`` (an ``ImportError``) naming ``pip install 'chancy-lite[web]'`` when the
    web extra (Starlette, Jinja2, itsdangerous; with ``server``, uvicorn too) is not installed."""
    modules = {"starlette": ("starlette",), "jinja2": ("jinja2",), "itsdangerous": ("itsdangerous",),
               "python-multipart": ("python_multipart", "multipart")}
    if server:
        modules["uvicorn"] = ("uvicorn",)
    missing = [name for name, choices in modules.items() if not any(_importable(m) for m in choices)]
    if missing:
        raise MissingDependencyError(
            f"the dashboard needs {', '.join(missing)}, which are not installed: {INSTALL}"
        )


def _importable(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def create_app(
    chancy: Chancy,
    *,
    auth: AuthBackend | None = None,
    secret_key: str | bytes | None = None,
    read_only: bool = False,
    login_required: bool = True,
    worker: Worker | None = None,
    allow_origins: Iterable[str] | None = None,
    debug: bool = False,
    live_interval: float = 1.0,
) -> Any:
    """The dashboard and HTTP API of ``chancy`` as a Starlette app, mountable under any sub-path.

    ``auth``: an ``AuthBackend`` (``SimpleAuthBackend({"user": "password"})``); when None, one user is read from
    ``CHANCY_LITE_WEB_USERNAME`` (default ``admin``) and ``CHANCY_LITE_WEB_PASSWORD``. There is no default
    password: without credentials the app refuses to be built (``ConfigurationError``) unless it is
    ``read_only=True`` and ``login_required=False`` (an open, read-only view). ``secret_key`` signs session cookies
    and API tokens (default ``CHANCY_LITE_WEB_SECRET``, else random per process: logins end with the process).
    ``read_only``: every action (retry, cancel, purge, queue changes) is refused with 403 and hidden from the
    pages. ``worker``: the Worker whose hub events ``/api/v1/ws`` forwards (optional). ``allow_origins``: origins
    allowed by CORS for the JSON API (none by default). ``live_interval``: seconds between the live view's checks
    for changes.

    Raises ``MissingDependencyError`` without the web extra, ``ConfigurationError`` for options that cannot work.
    """
    require_web()
    from chancy_lite.web.server import build_app

    return build_app(
        chancy, auth=auth, secret_key=secret_key, read_only=read_only, login_required=login_required,
        worker=worker, allow_origins=allow_origins, debug=debug, live_interval=live_interval,
    )
