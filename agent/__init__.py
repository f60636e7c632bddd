"""The tyre-shop voice agent on LiveKit Agents, its offline simulator and the ``voxpulse`` CLI."""
