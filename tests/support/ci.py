"""Whether the suite runs in CI, where a test that needs a broker or a tool may never skip."""

from __future__ import annotations

import os

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
