-- The SQL of every PostgreSQL panel of the dashboards, one query per name ("-- name: <name>").
-- grafana/build_dashboards.py puts them into the panels by name (white space is folded, so the layout
-- here is free); tests/dashboards checks that every panel's SQL is one of these and that every one of
-- these is used, and runs each on the real call-history schema (test_sql_panels.py).
-- Grafana's macros and variables: $__timeFilter(column), ${call_id:sqlstring}, $period.

-- == Agent performance =========================================================================

-- name: turns_with_tool_calls
SELECT 100.0 * (SELECT count(DISTINCT (call_id, turn_index))
                FROM call_tool_calls
                WHERE $__timeFilter(ts) AND turn_index IS NOT NULL)
       / NULLIF((SELECT count(DISTINCT (call_id, turn_index))
                 FROM call_turns
                 WHERE $__timeFilter(ts)), 0) AS "turns with tool calls"

-- name: top_tools
SELECT name AS tool,
       count(*) AS calls,
       round(100.0 * avg(success::int), 1) AS "success %",
       round(avg(duration_ms)::numeric, 1) AS "avg ms"
FROM call_tool_calls
WHERE $__timeFilter(ts)
GROUP BY name
ORDER BY calls DESC
LIMIT 10

-- == Analytics =================================================================================

-- name: calls
SELECT count(*) AS calls
FROM calls
WHERE $__timeFilter(started_at)

-- name: resolved_by_bot
SELECT 100.0 * count(*) FILTER (WHERE outcome = 'resolved_by_bot') / NULLIF(count(*), 0) AS "resolved by bot"
FROM calls
WHERE $__timeFilter(started_at) AND ended_at IS NOT NULL

-- name: average_call_cost
SELECT avg(cost_usd)::float8 AS "avg cost"
FROM calls
WHERE $__timeFilter(started_at) AND ended_at IS NOT NULL

-- name: average_duration
SELECT avg(duration_seconds) AS "avg duration"
FROM calls
WHERE $__timeFilter(started_at) AND ended_at IS NOT NULL

-- name: orders_created
SELECT coalesce(sum((app->>'orders_created')::int), 0) AS orders
FROM calls
WHERE $__timeFilter(started_at)

-- name: fitting_bookings
SELECT coalesce(sum((app->>'fittings_booked')::int), 0) AS fittings
FROM calls
WHERE $__timeFilter(started_at)

-- name: calls_per_period
SELECT date_trunc('$period', started_at) AS "time", count(*) AS calls
FROM calls
WHERE $__timeFilter(started_at)
GROUP BY 1
ORDER BY 1

-- name: orders_and_fitting_bookings_per_period
SELECT date_trunc('$period', started_at) AS "time",
       coalesce(sum((app->>'orders_created')::int), 0) AS orders,
       coalesce(sum((app->>'fittings_booked')::int), 0) AS fittings
FROM calls
WHERE $__timeFilter(started_at)
GROUP BY 1
ORDER BY 1

-- name: resolved_by_bot_vs_transferred
SELECT coalesce(outcome, 'unknown') AS outcome, count(*) AS calls
FROM calls
WHERE $__timeFilter(started_at) AND ended_at IS NOT NULL
GROUP BY 1
ORDER BY 2 DESC

-- name: scenarios
SELECT coalesce(scenario, 'unknown') AS scenario, count(*) AS calls
FROM calls
WHERE $__timeFilter(started_at)
GROUP BY 1
ORDER BY 2 DESC

-- name: transfer_reasons
SELECT coalesce(transfer_reason, 'unknown') AS reason, count(*) AS calls
FROM calls
WHERE $__timeFilter(started_at) AND outcome = 'transferred'
GROUP BY 1
ORDER BY 2 DESC

-- name: average_call_cost_per_period
SELECT date_trunc('$period', started_at) AS "time", avg(cost_usd)::float8 AS "avg cost"
FROM calls
WHERE $__timeFilter(started_at) AND ended_at IS NOT NULL
GROUP BY 1
ORDER BY 1

-- name: calls_by_hour_of_day_utc
SELECT date_trunc('day', started_at) AS "time",
       count(*) FILTER (WHERE extract(hour FROM started_at AT TIME ZONE 'UTC') = 0) AS "00",
       count(*) FILTER (WHERE extract(hour FROM started_at AT TIME ZONE 'UTC') = 1) AS "01",
       count(*) FILTER (WHERE extract(hour FROM started_at AT TIME ZONE 'UTC') = 2) AS "02",
       count(*) FILTER (WHERE extract(hour FROM started_at AT TIME ZONE 'UTC') = 3) AS "03",
       count(*) FILTER (WHERE extract(hour FROM started_at AT TIME ZONE 'UTC') = 4) AS "04",
       count(*) FILTER (WHERE extract(hour FROM started_at AT TIME ZONE 'UTC') = 5) AS "05",
       count(*) FILTER (WHERE extract(hour FROM started_at AT TIME ZONE 'UTC') = 6) AS "06",
       count(*) FILTER (WHERE extract(hour FROM started_at AT TIME ZONE 'UTC') = 7) AS "07",
       count(*) FILTER (WHERE extract(hour FROM started_at AT TIME ZONE 'UTC') = 8) AS "08",
       count(*) FILTER (WHERE extract(hour FROM started_at AT TIME ZONE 'UTC') = 9) AS "09",
       count(*) FILTER (WHERE extract(hour FROM started_at AT TIME ZONE 'UTC') = 10) AS "10",
       count(*) FILTER (WHERE extract(hour FROM started_at AT TIME ZONE 'UTC') = 11) AS "11",
       count(*) FILTER (WHERE extract(hour FROM started_at AT TIME ZONE 'UTC') = 12) AS "12",
       count(*) FILTER (WHERE extract(hour FROM started_at AT TIME ZONE 'UTC') = 13) AS "13",
       count(*) FILTER (WHERE extract(hour FROM started_at AT TIME ZONE 'UTC') = 14) AS "14",
       count(*) FILTER (WHERE extract(hour FROM started_at AT TIME ZONE 'UTC') = 15) AS "15",
       count(*) FILTER (WHERE extract(hour FROM started_at AT TIME ZONE 'UTC') = 16) AS "16",
       count(*) FILTER (WHERE extract(hour FROM started_at AT TIME ZONE 'UTC') = 17) AS "17",
       count(*) FILTER (WHERE extract(hour FROM started_at AT TIME ZONE 'UTC') = 18) AS "18",
       count(*) FILTER (WHERE extract(hour FROM started_at AT TIME ZONE 'UTC') = 19) AS "19",
       count(*) FILTER (WHERE extract(hour FROM started_at AT TIME ZONE 'UTC') = 20) AS "20",
       count(*) FILTER (WHERE extract(hour FROM started_at AT TIME ZONE 'UTC') = 21) AS "21",
       count(*) FILTER (WHERE extract(hour FROM started_at AT TIME ZONE 'UTC') = 22) AS "22",
       count(*) FILTER (WHERE extract(hour FROM started_at AT TIME ZONE 'UTC') = 23) AS "23"
FROM calls
WHERE $__timeFilter(started_at)
GROUP BY 1
ORDER BY 1

-- == Call explorer =============================================================================

-- name: recent_calls
SELECT started_at AS "time",
       call_id,
       trace_id,
       direction,
       status,
       scenario,
       outcome,
       transfer_reason,
       duration_seconds,
       cost_usd::float8 AS cost_usd,
       turns
FROM calls
WHERE $__timeFilter(started_at) AND (${call_id:sqlstring} = '' OR call_id = ${call_id:sqlstring})
ORDER BY started_at DESC
LIMIT 100

-- name: slow_calls
SELECT c.call_id,
       c.trace_id,
       max(t.ttfw_ms) AS max_ttfw_ms,
       round(avg(t.ttfw_ms)::numeric, 1) AS avg_ttfw_ms,
       count(*) AS turns,
       min(c.started_at) AS started_at
FROM call_turns t
JOIN calls c ON c.call_id = t.call_id
WHERE $__timeFilter(t.ts) AND t.ttfw_ms IS NOT NULL
GROUP BY c.call_id, c.trace_id
ORDER BY max_ttfw_ms DESC
LIMIT 20

-- name: transcript
SELECT ts AS "time", turn_index, speaker, text, stt_ms, llm_ms, tts_ms, ttfw_ms, interrupted
FROM call_turns
WHERE call_id = ${call_id:sqlstring}
ORDER BY ts, turn_index

-- name: tool_calls
SELECT ts AS "time",
       turn_index,
       name,
       success,
       duration_ms,
       args::text AS args,
       result::text AS result,
       error
FROM call_tool_calls
WHERE call_id = ${call_id:sqlstring}
ORDER BY ts, seq

-- == Real time =================================================================================

-- name: calls_in_progress
SELECT started_at AS "time", call_id, direction, scenario, room, agent_version
FROM calls
WHERE status = 'active' AND started_at > now() - interval '1 day'
ORDER BY started_at DESC
LIMIT 50

-- name: recent_alerts
SELECT received_at AS "time", status, severity, alertname, service, summary, starts_at, resolved_at
FROM alerts_history
WHERE $__timeFilter(received_at)
ORDER BY received_at DESC
LIMIT 50
