"""`python -m tvmaniac_refreshd` is the same as the `tvmaniac-refreshd` command."""

from __future__ import annotations

import sys

from tvmaniac_refreshd.entry import main

sys.exit(main())
