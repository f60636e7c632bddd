"""The offline simulation harness: real LiveKit ``AgentSession``s with fake providers, a fake room
and a fake store API, so calls run without a server, keys or network.

* :mod:`.scenarios` -- what simulated callers say and how their calls should end;
* :mod:`.simulator` -- runs scenarios as concurrent calls through ``TyreAssistant`` and the
  telemetry integration, and collects what was measured;
* :mod:`.providers` -- fake VAD, STT, LLM and TTS on LiveKit's base classes;
* :mod:`.latency` -- their latency, timeout and error model;
* :mod:`.dialogue` -- the fake model's policy (rules over the caller's words);
* :mod:`.audio` -- synthetic speech and the session's audio input and sink;
* :mod:`.fake_shop` -- the store API as a local aiohttp server.
"""
