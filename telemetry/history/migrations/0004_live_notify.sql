-- The web console's live feed (after 0003_alerts_history; idempotent: replaces what the console's
-- former namespace created): PostgreSQL NOTIFY on channel voxpulse_live whenever a call row or an
-- alerts_history row is written. The payload carries keys only (never a phone number or text): the
-- console reads the row itself and masks what the user may not see.
--   calls          {"t":"call","op":"INSERT|UPDATE","id":call_id,"s":started_at (epoch seconds)}
--   alerts_history {"t":"alert","op":"INSERT|UPDATE","id":id}
-- Row triggers on the partitioned calls table apply to every partition, present and future.

CREATE OR REPLACE FUNCTION voxpulse_console_notify_call() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('voxpulse_live', json_build_object(
        't', 'call', 'op', TG_OP, 'id', NEW.call_id,
        's', extract(epoch FROM NEW.started_at))::text);
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION voxpulse_console_notify_alert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('voxpulse_live', json_build_object('t', 'alert', 'op', TG_OP, 'id', NEW.id)::text);
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS voxpulse_console_live ON calls;
CREATE TRIGGER voxpulse_console_live AFTER INSERT OR UPDATE ON calls
    FOR EACH ROW EXECUTE FUNCTION voxpulse_console_notify_call();

DROP TRIGGER IF EXISTS voxpulse_console_live ON alerts_history;
CREATE TRIGGER voxpulse_console_live AFTER INSERT OR UPDATE ON alerts_history
    FOR EACH ROW EXECUTE FUNCTION voxpulse_console_notify_alert();

-- The calls list pages newest first by (started_at, call_id): one index serves every page.
CREATE INDEX IF NOT EXISTS calls_started_at_call_id_idx ON calls (started_at DESC, call_id DESC);
