-- Rate-limit state for MySQL and MariaDB. `{prefix}` is the store's table
-- prefix. Times are nanoseconds since the Unix epoch. Keys compare byte
-- for byte (a binary collation), so `User` and `user` stay apart.
CREATE TABLE IF NOT EXISTS {prefix}counters (
    bucket_key VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
    data VARCHAR(64) NOT NULL,
    count BIGINT NOT NULL DEFAULT 0,
    expires_at BIGINT NOT NULL,
    INDEX {prefix}counters_expires_at (expires_at)
) ENGINE = InnoDB;
CREATE TABLE IF NOT EXISTS {prefix}entries (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    bucket_key VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    admitted_at BIGINT NOT NULL,
    cost BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    INDEX {prefix}entries_key_admitted (bucket_key, admitted_at),
    INDEX {prefix}entries_expires_at (expires_at)
) ENGINE = InnoDB;
