-- VoxPulse call history, version 1.
-- calls / call_turns / call_tool_calls are range-partitioned by month (UTC) on their own
-- timestamp; partitions are created by voxpulse_ensure_month_partitions(month), which migrate()
-- calls for the current and next months and the writer calls on demand for any other month.
-- Idempotency keys include the partition key (PostgreSQL requires it for unique constraints on
-- partitioned tables):
--   calls            PRIMARY KEY (call_id, started_at)
--   call_turns       PRIMARY KEY (call_id, turn_index, speaker, ts)
--   call_tool_calls  PRIMARY KEY (call_id, ts, seq)
-- so a replayed record (same values, from the Redis or memory buffer) is ON CONFLICT DO NOTHING.
--
-- Edited after release: alerts_history moved to the console's own migrations
-- (voxpulse_console/migrations); databases that applied the first text keep their table.
-- replaces checksum: b67d3dca06fa6ca5

CREATE TABLE customers (
    id             bigserial PRIMARY KEY,
    phone          text NOT NULL UNIQUE,
    name           text,
    total_calls    integer NOT NULL DEFAULT 0,
    first_call_at  timestamptz,
    last_call_at   timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE calls (
    call_id          text NOT NULL,
    started_at       timestamptz NOT NULL,
    trace_id         text,              -- 32 lowercase hex chars: the call's trace in Tempo
    span_id          text,              -- 16 hex chars: the call's root span
    customer_id      bigint REFERENCES customers (id),
    phone            text,              -- raw caller number (searchable; masked only in telemetry)
    caller_name      text,
    direction        text NOT NULL DEFAULT 'inbound' CHECK (direction IN ('inbound', 'outbound')),
    status           text NOT NULL DEFAULT 'active'
                     CHECK (status IN ('active', 'completed', 'failed', 'transferred')),
    scenario         text,
    outcome          text,              -- resolved_by_bot | transferred | abandoned | failed
    transfer_reason  text,
    ended_at         timestamptz,
    duration_seconds double precision,
    cost_usd         numeric(14, 6),
    turns            integer,
    orders_created   integer NOT NULL DEFAULT 0,
    fittings_booked  integer NOT NULL DEFAULT 0,
    room             text,
    agent_version    text,
    inserted_at      timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (call_id, started_at)
) PARTITION BY RANGE (started_at);
CREATE INDEX calls_started_at_idx ON calls (started_at DESC);
CREATE INDEX calls_phone_idx ON calls (phone, started_at DESC);
CREATE INDEX calls_trace_id_idx ON calls (trace_id);
CREATE INDEX calls_customer_idx ON calls (customer_id);
CREATE INDEX calls_active_idx ON calls (status) WHERE status = 'active';

CREATE TABLE call_turns (
    call_id      text NOT NULL,
    turn_index   integer NOT NULL,
    speaker      text NOT NULL CHECK (speaker IN ('user', 'agent', 'system')),
    ts           timestamptz NOT NULL,
    text         text NOT NULL DEFAULT '',
    stt_ms       double precision,
    llm_ms       double precision,
    tts_ms       double precision,
    ttfw_ms      double precision,
    interrupted  boolean NOT NULL DEFAULT false,
    trace_id     text,
    span_id      text,
    PRIMARY KEY (call_id, turn_index, speaker, ts)
) PARTITION BY RANGE (ts);
CREATE INDEX call_turns_ts_idx ON call_turns (ts DESC);

CREATE TABLE call_tool_calls (
    call_id       text NOT NULL,
    ts            timestamptz NOT NULL,
    seq           bigint NOT NULL,     -- unique per logging process; part of the replay key
    turn_index    integer,
    name          text NOT NULL,
    tool_call_id  text,
    args          jsonb,
    result        jsonb,
    success       boolean NOT NULL,
    error         text,
    duration_ms   double precision,
    trace_id      text,
    span_id       text,
    PRIMARY KEY (call_id, ts, seq)
) PARTITION BY RANGE (ts);
CREATE INDEX call_tool_calls_ts_idx ON call_tool_calls (ts DESC);
CREATE INDEX call_tool_calls_name_idx ON call_tool_calls (name, ts DESC);

-- Per-day (UTC) aggregates for the analytics dashboard; refreshed by refresh_daily_stats().
CREATE TABLE daily_stats (
    day              date PRIMARY KEY,
    calls            integer NOT NULL DEFAULT 0,
    resolved_by_bot  integer NOT NULL DEFAULT 0,
    transferred      integer NOT NULL DEFAULT 0,
    abandoned        integer NOT NULL DEFAULT 0,
    failed           integer NOT NULL DEFAULT 0,
    avg_cost         numeric(14, 6),
    total_cost       numeric(14, 6) NOT NULL DEFAULT 0,
    orders           integer NOT NULL DEFAULT 0,
    fittings         integer NOT NULL DEFAULT 0,
    avg_duration     double precision,
    turns            integer NOT NULL DEFAULT 0,
    tool_calls       integer NOT NULL DEFAULT 0,
    refreshed_at     timestamptz NOT NULL DEFAULT now()
);

-- Monthly partitions (UTC month boundaries), created idempotently under an advisory lock.
CREATE FUNCTION voxpulse_ensure_month_partitions(p_month date) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    m  date := date_trunc('month', p_month)::date;
    lo timestamptz := m::timestamp AT TIME ZONE 'UTC';
    hi timestamptz := (m + interval '1 month')::timestamp AT TIME ZONE 'UTC';
    t  text;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('voxpulse_ensure_month_partitions'));
    FOREACH t IN ARRAY ARRAY['calls', 'call_turns', 'call_tool_calls'] LOOP
        EXECUTE format('CREATE TABLE IF NOT EXISTS %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                       t || '_' || to_char(m, 'YYYY_MM'), t, lo, hi);
    END LOOP;
END
$$;

-- Customers: a call row gets its customer (by raw phone) before insert; the customer's totals
-- grow only AFTER a call row is really inserted, so a replayed call (ON CONFLICT DO NOTHING, or
-- the DO UPDATE of a call end) never counts twice.
CREATE FUNCTION voxpulse_calls_customer() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.customer_id IS NULL AND NEW.phone IS NOT NULL AND NEW.phone <> '' THEN
        SELECT id INTO NEW.customer_id FROM customers WHERE phone = NEW.phone;
        IF NEW.customer_id IS NULL THEN
            INSERT INTO customers (phone, name) VALUES (NEW.phone, NEW.caller_name)
            ON CONFLICT (phone) DO NOTHING
            RETURNING id INTO NEW.customer_id;
            IF NEW.customer_id IS NULL THEN
                SELECT id INTO NEW.customer_id FROM customers WHERE phone = NEW.phone;
            END IF;
        END IF;
    END IF;
    RETURN NEW;
END
$$;

CREATE FUNCTION voxpulse_calls_count_customer() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.customer_id IS NOT NULL THEN
        UPDATE customers
           SET total_calls   = total_calls + 1,
               first_call_at = LEAST(first_call_at, NEW.started_at),
               last_call_at  = GREATEST(last_call_at, NEW.started_at),
               name          = COALESCE(NEW.caller_name, name),
               updated_at    = now()
         WHERE id = NEW.customer_id;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER calls_customer BEFORE INSERT ON calls
    FOR EACH ROW EXECUTE FUNCTION voxpulse_calls_customer();
CREATE TRIGGER calls_count_customer AFTER INSERT ON calls
    FOR EACH ROW EXECUTE FUNCTION voxpulse_calls_count_customer();
