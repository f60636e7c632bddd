-- The calls list's "minimum time to first word" filter: the turns at or above a threshold, found
-- through an index instead of a probe per call (agent turns carry ttfw_ms; caller turns do not).
CREATE INDEX IF NOT EXISTS call_turns_ttfw_idx ON call_turns (ttfw_ms) WHERE ttfw_ms IS NOT NULL;
