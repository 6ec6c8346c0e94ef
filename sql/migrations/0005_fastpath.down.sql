DROP INDEX IF EXISTS holds_idempotency_key;
ALTER TABLE holds ADD CONSTRAINT holds_idempotency_key_key UNIQUE (idempotency_key);
DROP TRIGGER IF EXISTS partition_limits_mirror ON partition_limits;
DROP FUNCTION IF EXISTS asbb_partition_limits_mirror();
DROP FUNCTION IF EXISTS asbb_mirror_partition_limits(bigint);
ALTER TABLE accounts DROP COLUMN IF EXISTS limited_partitions;
