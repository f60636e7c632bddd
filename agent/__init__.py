"""The example tyre-shop voice agent on LiveKit Agents, and its offline call simulator."""
