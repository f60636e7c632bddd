-- The console's insights receiver (voxpulse_console/insights): what LiveKit Agents uploads for
-- "Agent insights" (LIVEKIT_OBSERVABILITY_URL), one row per call. call_id is the LiveKit room's
-- *id* (else the job's id), never the room name, which may carry the caller's number. The audio and
-- the transcript are files under the receiver's folder; this row holds their sizes, not their content.
CREATE TABLE IF NOT EXISTS insights_calls (
    call_id           text PRIMARY KEY,
    room_id           text,
    job_id            text,
    agent_name        text,
    sdk_version       text,
    started_at        timestamptz,            -- the recording's start (MetricsRecordingHeader.start_time)
    duration_s        double precision,
    simulated         boolean NOT NULL DEFAULT false,
    redaction_enabled boolean NOT NULL DEFAULT false,
    audio_bytes       bigint NOT NULL DEFAULT 0,   -- as kept on disk (0: none, or not kept)
    audio_dropped     boolean NOT NULL DEFAULT false, -- uploaded but not kept (VOXPULSE_INSIGHTS_AUDIO off)
    audio_broken      boolean NOT NULL DEFAULT false, -- kept, but not a complete Ogg stream
    audio_problem     text,
    audio_seconds     double precision,
    chat_bytes        bigint NOT NULL DEFAULT 0,
    chat_items        integer NOT NULL DEFAULT 0,
    tags              jsonb NOT NULL DEFAULT '{}'::jsonb,  -- tag -> its metadata (null: none)
    evaluations       jsonb NOT NULL DEFAULT '{}'::jsonb,  -- judge -> {verdict, reasoning, instructions}
    outcome           text,                   -- success | fail
    outcome_reason    text,
    received_at       timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS insights_calls_received_idx ON insights_calls (received_at);

-- Erasure requests (a caller's audio and transcript deleted by call_id): who, when, what went.
CREATE TABLE IF NOT EXISTS insights_erasures (
    id            bigserial PRIMARY KEY,
    call_id       text NOT NULL,
    requested_by  text NOT NULL,
    reason        text,
    rows_removed  integer NOT NULL,
    files_removed integer NOT NULL,
    erased_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS insights_erasures_call_idx ON insights_erasures (call_id);
