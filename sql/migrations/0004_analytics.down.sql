DROP INDEX IF EXISTS grant_entries_time;
DROP INDEX IF EXISTS charges_overrun;
DROP TABLE IF EXISTS alerts;
