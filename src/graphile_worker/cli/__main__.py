"""``python -m graphile_worker.cli``: the same as the ``graphile-worker`` console script."""

from __future__ import annotations

from . import main

if __name__ == "__main__":
    main(prog_name="graphile-worker")
