-- One migration tree: the console's migrations (alerts_history, the live feed's triggers, the calls
-- list's index) are 0003-0005 of this tree, recorded in schema_migrations with the rest. Databases
-- that applied them in the console's former namespace ran them again above (each is idempotent);
-- that namespace's record goes.
DROP TABLE IF EXISTS console_schema_migrations;
