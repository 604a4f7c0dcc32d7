"""`python -m bridge` is an alias of the `talon-bridge` console script."""

from __future__ import annotations

from bridge.cli import main

raise SystemExit(main())
