"""A web admin for the queue, to mount in an ASGI app or serve with ``graphile-worker admin``.

Server-rendered pages (Starlette and Jinja2) show the counts, the jobs, one job, the named
queues, the workers and the crontab, and let an operator retry, cancel or delete jobs,
add one, release a dead worker's locks and run a sweep. One small script refreshes the
open page; nothing is built with JavaScript tooling. Mount it in your own app::

    from graphile_worker.admin import AdminAuth, admin_app

    admin = admin_app(utils, auth=AdminAuth.basic(os.environ["ADMIN_PASSWORD"]))
    app.mount("/jobs", admin)

It is safe by default: every request is authenticated (the caller must choose how), every
change needs a CSRF token, and every response forbids framing, caching and foreign scripts.
Needs the ``admin`` extra: ``pip install 'graphile-worker[admin]'``.
"""

from __future__ import annotations

from importlib.util import find_spec as _find_spec

# Checked by name, without importing them: a missing extra fails here, naming the fix,
# rather than at the first request.
_MISSING = [package for package in ("starlette", "jinja2") if _find_spec(package) is None]
if _MISSING:  # pragma: no cover - the test environment installs the extra
    raise ImportError(
        f"graphile_worker.admin needs {', '.join(_MISSING)}, which "
        f"{'is' if len(_MISSING) == 1 else 'are'} not installed; install the admin extra: "
        "pip install 'graphile-worker[admin]'"
    )

from ._app import admin_app as admin_app
from ._auth import AdminAuth as AdminAuth

__all__ = ["AdminAuth", "admin_app"]
