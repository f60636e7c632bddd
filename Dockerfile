# The VoxPulse agent / simulator image (docker-compose.yml service `agent`).
FROM python:3.11.13-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

COPY pyproject.toml README.md ./
COPY telemetry ./telemetry
COPY agent ./agent
RUN pip install . && useradd --system --uid 10001 voxpulse

USER voxpulse
CMD ["voxpulse", "simulate"]
