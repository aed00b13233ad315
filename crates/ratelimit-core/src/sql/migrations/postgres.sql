-- Rate-limit state for PostgreSQL. `{prefix}` is the store's table prefix.
-- Times are nanoseconds since the Unix epoch.
CREATE TABLE IF NOT EXISTS {prefix}counters (
    bucket_key VARCHAR(255) PRIMARY KEY,
    data VARCHAR(64) NOT NULL,
    count BIGINT NOT NULL DEFAULT 0,
    expires_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS {prefix}counters_expires_at ON {prefix}counters (expires_at);
CREATE TABLE IF NOT EXISTS {prefix}entries (
    id BIGSERIAL PRIMARY KEY,
    bucket_key VARCHAR(255) NOT NULL,
    admitted_at BIGINT NOT NULL,
    cost BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS {prefix}entries_key_admitted ON {prefix}entries (bucket_key, admitted_at);
CREATE INDEX IF NOT EXISTS {prefix}entries_expires_at ON {prefix}entries (expires_at);
