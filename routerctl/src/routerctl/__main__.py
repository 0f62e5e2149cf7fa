"""``python -m routerctl``."""

from __future__ import annotations

import sys

from routerctl.cli import main

sys.exit(main())
