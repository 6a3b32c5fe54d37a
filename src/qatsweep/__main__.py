"""``python -m qatsweep`` is the ``qatsweep`` command."""

from __future__ import annotations

import sys

from qatsweep.cli import main

sys.exit(main())
