"""A job module that starts a thread when imported: a template that preloads it must not fork."""

from __future__ import annotations

import threading

_stop = threading.Event()
threading.Thread(target=_stop.wait, name="started-at-import", daemon=True).start()


def noop() -> None:
    pass
