# The VoxPulse image: the example agent and its simulator, and the `voxpulse` operator console
# (docker-compose.yml services `agent`, `alerts-receiver`, `alertmanager-config`, `console`).

# The web console's frontend, built from web/ with its lockfile (served as package data).
FROM node:20.19.5-bookworm-slim AS web
WORKDIR /src/web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY web/ ./
RUN npm run build

FROM python:3.11.13-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VOXPULSE_CONFIG_DIR=/etc/voxpulse
WORKDIR /app

COPY pyproject.toml README.md ./
COPY telemetry ./telemetry
COPY agent ./agent
COPY voxpulse_console ./voxpulse_console
COPY --from=web /src/voxpulse_console/ui/static ./voxpulse_console/ui/static
# The configs the console reads at run time (its explicit config directory).
COPY otel-collector /etc/voxpulse/otel-collector
COPY prometheus /etc/voxpulse/prometheus
RUN pip install ".[agent,console]" && useradd --system --uid 10001 voxpulse

USER voxpulse
CMD ["voxpulse", "simulate"]
