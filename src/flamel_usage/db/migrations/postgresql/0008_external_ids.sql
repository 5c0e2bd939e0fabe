-- The platform's own id of each user (SPEC 7): a session in the platform's store
-- (connect-redis, connect-pg-simple) names its user by it, and this maps it to ours.
-- Optional, and unique among live users only: a deleted user keeps its id on record,
-- and a new user may take it. The lookup of every platform session reads this index.
ALTER TABLE users ADD COLUMN external_id TEXT;
CREATE UNIQUE INDEX users_external_id ON users (external_id) WHERE deleted_at IS NULL;
