-- The insights receiver's calls (0007) joined to the call history, and in the console's live feed.
-- * calls.room_sid: the LiveKit room's *id* (RM_...) of a call whose call_id is another (a SIP call
--   id): the key LiveKit's observability upload arrives under (insights_calls.call_id). Never the
--   room's name, which a SIP dispatch builds from the caller's number.
-- * the calls list pages through the calls only the receiver knows (an agent without VoxPulse) by
--   (coalesce(started_at, received_at), call_id), like calls by (started_at, call_id).
-- * insights_calls rows notify voxpulse_live ({"t":"insights","op":...,"id":call_id}, keys only).
ALTER TABLE calls ADD COLUMN IF NOT EXISTS room_sid text;
CREATE INDEX IF NOT EXISTS calls_room_sid_idx ON calls (room_sid) WHERE room_sid IS NOT NULL;
CREATE INDEX IF NOT EXISTS insights_calls_started_idx
    ON insights_calls ((coalesce(started_at, received_at)) DESC, call_id DESC);

CREATE OR REPLACE FUNCTION voxpulse_console_notify_insights() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('voxpulse_live', json_build_object('t', 'insights', 'op', TG_OP, 'id', NEW.call_id)::text);
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS voxpulse_console_live ON insights_calls;
CREATE TRIGGER voxpulse_console_live AFTER INSERT OR UPDATE ON insights_calls
    FOR EACH ROW EXECUTE FUNCTION voxpulse_console_notify_insights();
