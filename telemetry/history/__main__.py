import sys

from telemetry.history.cli import main

sys.exit(main())
