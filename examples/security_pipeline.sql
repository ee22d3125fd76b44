-- A security pipeline on the built-in generator: login failures per user, threat by region,
-- and per-user activity. Run it with `weir demo` or `weir --pipeline examples/security_pipeline.sql`.

CREATE SOURCE IF NOT EXISTS auth_events (
    event_id TEXT, user_name TEXT, ts TIMESTAMP, type TEXT,
    source_ip TEXT, geo TEXT, threat_score DOUBLE,
    WATERMARK FOR ts AS ts - INTERVAL '5 seconds'
) WITH (connector = 'generator', kind = 'security_events', rate = '100', seed = '7', format = 'json');

-- Tumbling window: who is failing to log in, from how many addresses.
CREATE MATERIALIZED VIEW IF NOT EXISTS failed_logins_1m AS
SELECT window_start, window_end, user_name,
       count(*) AS failures,
       approx_distinct(source_ip) AS ips,
       max(threat_score) AS worst_threat
FROM TUMBLE(auth_events, ts, INTERVAL '1 minute')
WHERE type = 'LOGIN_FAILED'
GROUP BY window_start, window_end, user_name;

-- Hopping window: threat level per region over the last five minutes, every minute.
CREATE MATERIALIZED VIEW IF NOT EXISTS threat_by_geo_5m AS
SELECT window_start, window_end, geo,
       count(*) AS events,
       avg(threat_score) AS avg_threat,
       stddev(threat_score) AS stddev_threat
FROM HOP(auth_events, ts, INTERVAL '1 minute', INTERVAL '5 minutes')
GROUP BY window_start, window_end, geo;

-- No window: kept current for every user.
CREATE MATERIALIZED VIEW IF NOT EXISTS user_activity AS
SELECT user_name,
       count(*) AS events,
       count(DISTINCT geo) AS countries,
       max(threat_score) AS max_threat,
       ip_subnet(min(source_ip), 16) AS home_network
FROM auth_events
GROUP BY user_name;

-- Per-user baselines: logins unlike the user's own history (hour of day, IPs, places, event
-- types, failures), scored before each event is learnt; a user's first 100 events only teach.
-- Append-only: every row that passes WHERE is kept, for a day of event time.
CREATE MATERIALIZED VIEW IF NOT EXISTS alerts WITH (retention = '1 day') AS
SELECT ts, user_name, source_ip, geo, type,
       round(anomaly_score(user_name, ts, source_ip, geo, type, type = 'LOGIN_FAILED'), 2) AS score
FROM auth_events
WHERE anomaly_score(user_name, ts, source_ip, geo, type, type = 'LOGIN_FAILED') >= 0.5;

-- A view over a view: each user's closed minutes of failures (from failed_logins_1m), scored
-- against that user's own baseline of failures per minute (an exponentially weighted mean and
-- variance, learnt minute by minute in minute order); a spike is a minute far above it. A
-- user's first 10 minutes only teach.
CREATE MATERIALIZED VIEW IF NOT EXISTS failure_spikes WITH (retention = '1 day') AS
SELECT window_start, user_name, failures, ips,
       round(ewma_zscore(user_name, failures), 2) AS z
FROM failed_logins_1m
WHERE ewma_zscore(user_name, failures) >= 3;
