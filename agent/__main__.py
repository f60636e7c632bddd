"""``python -m agent dev|start|console``: LiveKit's CLI around :data:`agent.server.server`."""

from __future__ import annotations

from livekit.agents import cli

from .server import server

if __name__ == "__main__":
    cli.run_app(server)
