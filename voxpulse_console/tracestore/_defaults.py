"""Where each trace store's query API answers on this machine when nothing says otherwise."""

from __future__ import annotations

from typing import Final

__all__ = ["DEFAULT_KIND", "DEFAULT_URLS"]

DEFAULT_KIND: Final = "jaeger"
#: Jaeger (the native stack) and Tempo (docker compose).
DEFAULT_URLS: Final = {"jaeger": "http://127.0.0.1:16686", "tempo": "http://127.0.0.1:3200"}
