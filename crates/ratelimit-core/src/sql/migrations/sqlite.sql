-- Rate-limit state for SQLite. `{prefix}` is the store's table prefix.
-- Times are nanoseconds since the Unix epoch.
CREATE TABLE IF NOT EXISTS {prefix}counters (
    bucket_key TEXT PRIMARY KEY NOT NULL,
    data TEXT NOT NULL,
    count INTEGER NOT NULL DEFAULT 0,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS {prefix}counters_expires_at ON {prefix}counters (expires_at);
CREATE TABLE IF NOT EXISTS {prefix}entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    bucket_key TEXT NOT NULL,
    admitted_at INTEGER NOT NULL,
    cost INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS {prefix}entries_key_admitted ON {prefix}entries (bucket_key, admitted_at);
CREATE INDEX IF NOT EXISTS {prefix}entries_expires_at ON {prefix}entries (expires_at);
