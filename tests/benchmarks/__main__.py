"""``python -m tests.benchmarks``; run ``--help`` for the options."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
