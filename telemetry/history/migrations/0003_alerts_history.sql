-- The console's alerts receiver: Alertmanager webhook history (operations data, not call history),
-- in the database's one migration tree since the console's own (voxpulse_console/migrations, recorded
-- in console_schema_migrations) was folded in; 0006 retires that record.
-- IF NOT EXISTS: databases migrated before already hold the table (the call history's first release
-- created it, then the console's namespace did); it is adopted as it is.
--
-- Alertmanager webhook history. One row per (alert fingerprint, startsAt, status): a replayed
-- webhook is ON CONFLICT (fingerprint, starts_at, status) DO NOTHING; a resolution is its own row.
CREATE TABLE IF NOT EXISTS alerts_history (
    id            bigserial PRIMARY KEY,
    fingerprint   text NOT NULL,
    alertname     text NOT NULL,
    severity      text,                -- critical | warning | info (the rule's severity label)
    service       text NOT NULL DEFAULT '',
    status        text NOT NULL CHECK (status IN ('firing', 'resolved')),
    message       text NOT NULL DEFAULT '',
    summary       text,
    labels        jsonb NOT NULL DEFAULT '{}'::jsonb,
    annotations   jsonb NOT NULL DEFAULT '{}'::jsonb,
    starts_at     timestamptz NOT NULL,
    triggered_at  timestamptz NOT NULL DEFAULT now(),
    resolved_at   timestamptz,
    generator_url text,
    acknowledged  boolean NOT NULL DEFAULT false,
    received_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (fingerprint, starts_at, status)
);
CREATE INDEX IF NOT EXISTS alerts_history_triggered_idx ON alerts_history (triggered_at DESC);
CREATE INDEX IF NOT EXISTS alerts_history_alertname_idx ON alerts_history (alertname, triggered_at DESC);

