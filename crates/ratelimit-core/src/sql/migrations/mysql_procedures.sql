-- One-round-trip decisions for MySQL and MariaDB: a procedure per
-- single-statement case, called with CALL. Statements are separated by
-- lines holding only $$ (the bodies contain semicolons).
--
-- A single INSERT ... ON DUPLICATE KEY UPDATE decides under the row's
-- lock; user variables carry out whether it admitted the request and the
-- new state, so the request is never charged when denied.
CREATE PROCEDURE IF NOT EXISTS {prefix}window(
    IN p_key VARCHAR(255) CHARACTER SET ascii, IN p_at BIGINT, IN p_cost BIGINT, IN p_period BIGINT, IN p_capacity BIGINT)
BEGIN
    DECLARE v_now BIGINT DEFAULT IFNULL(p_at, CAST(UNIX_TIMESTAMP(SYSDATE(6)) * 1000000 AS SIGNED) * 1000);
    DECLARE v_end BIGINT DEFAULT (v_now DIV p_period + 1) * p_period;
    SET @rl_ok = 1, @rl_count = p_cost;
    INSERT INTO {prefix}counters (bucket_key, data, count, expires_at) VALUES (p_key, '', p_cost, v_end)
    ON DUPLICATE KEY UPDATE
        count = IF(expires_at = v_end,
                   IF(count + p_cost <= p_capacity, @rl_count := count + p_cost, (@rl_ok := 0) + count),
                   @rl_count := p_cost),
        expires_at = IF(@rl_ok = 1, v_end, expires_at);
    SELECT CAST(@rl_ok AS SIGNED), CAST(@rl_count AS SIGNED), v_end, v_now;
END
$$
CREATE PROCEDURE IF NOT EXISTS {prefix}bucket(
    IN p_key VARCHAR(255) CHARACTER SET ascii, IN p_at BIGINT, IN p_cost BIGINT, IN p_interval BIGINT, IN p_tolerance BIGINT)
BEGIN
    DECLARE v_now BIGINT DEFAULT IFNULL(p_at, CAST(UNIX_TIMESTAMP(SYSDATE(6)) * 1000000 AS SIGNED) * 1000);
    DECLARE v_step BIGINT DEFAULT p_cost * p_interval;
    SET @rl_ok = 1, @rl_tat = v_now + v_step;
    INSERT INTO {prefix}counters (bucket_key, data, count, expires_at) VALUES (p_key, '', 0, v_now + v_step)
    ON DUPLICATE KEY UPDATE
        expires_at = IF(GREATEST(expires_at, v_now) + v_step - v_now <= p_tolerance,
                        @rl_tat := GREATEST(expires_at, v_now) + v_step,
                        (@rl_ok := 0) + expires_at);
    SELECT CAST(@rl_ok AS SIGNED), 0, CAST(@rl_tat AS SIGNED), v_now;
END
