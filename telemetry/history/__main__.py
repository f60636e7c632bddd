import sys

from telemetry.history.commands import main

sys.exit(main())
