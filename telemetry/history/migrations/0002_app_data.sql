-- VoxPulse call history, version 2: the application's own per-call data leaves the core columns.
-- calls.orders_created / fittings_booked (the tyre shop's counters) become keys of calls.app, a JSON
-- object any agent fills with its own values (CallScope.app -> CallLogger.log_call_end(app=...));
-- daily_stats.orders / fittings become daily_stats.app, the per-day sums of the numeric keys.
-- Existing values are moved, then the old columns dropped.

ALTER TABLE calls ADD COLUMN app jsonb NOT NULL DEFAULT '{}'::jsonb;
UPDATE calls
   SET app = jsonb_strip_nulls(jsonb_build_object(
           'orders_created', nullif(orders_created, 0),
           'fittings_booked', nullif(fittings_booked, 0)))
 WHERE orders_created <> 0 OR fittings_booked <> 0;
ALTER TABLE calls DROP COLUMN orders_created, DROP COLUMN fittings_booked;

ALTER TABLE daily_stats ADD COLUMN app jsonb NOT NULL DEFAULT '{}'::jsonb;
UPDATE daily_stats
   SET app = jsonb_strip_nulls(jsonb_build_object(
           'orders_created', nullif(orders, 0),
           'fittings_booked', nullif(fittings, 0)))
 WHERE orders <> 0 OR fittings <> 0;
ALTER TABLE daily_stats DROP COLUMN orders, DROP COLUMN fittings;
