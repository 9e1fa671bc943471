"""``python -m pytest_darklaunch render ...``: see :mod:`pytest_darklaunch.cli`."""

from __future__ import annotations

from pytest_darklaunch.cli import main

raise SystemExit(main())
