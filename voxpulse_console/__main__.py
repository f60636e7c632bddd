"""``python -m voxpulse_console`` is the ``voxpulse`` command."""

import sys

from voxpulse_console.cli import main

sys.exit(main())
