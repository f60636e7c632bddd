"""``python -m voxpulse_console.stack up|down|status|...``: the ``voxpulse stack`` command."""

from voxpulse_console.stack._cli import main

raise SystemExit(main())
