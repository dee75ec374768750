"""Suite-wide settings.

Hypothesis: no per-example deadline (CI machines are shared and slow; timing lives in ``bench/``), and under
``CI`` the examples are derandomized so a CI run is reproducible; locally each run explores new examples.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("dev", deadline=None)
settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
