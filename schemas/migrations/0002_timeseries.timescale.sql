-- TimescaleDB flavour: hypertables on the time columns, compression of old chunks and a
-- continuous aggregate of daily cohort summaries. Applied when the extension (community/TSL
-- build) is available; 0002_timeseries.plain.sql gives the same columns otherwise.

SELECT create_hypertable('timepoint_scores', by_range('observed_at', INTERVAL '30 days'),
                         migrate_data => true);
SELECT create_hypertable('tumour_measurements', by_range('observed_at', INTERVAL '30 days'),
                         migrate_data => true);

ALTER TABLE timepoint_scores SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'patient, score_name',
    timescaledb.compress_orderby = 'observed_at DESC'
);
SELECT add_compression_policy('timepoint_scores', compress_after => INTERVAL '180 days');

ALTER TABLE tumour_measurements SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'patient',
    timescaledb.compress_orderby = 'observed_at DESC'
);
SELECT add_compression_policy('tumour_measurements', compress_after => INTERVAL '180 days');

CREATE MATERIALIZED VIEW cohort_daily
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 day', observed_at) AS day,
       score_name,
       count(*)   AS n_scores,
       avg(value) AS mean_value,
       min(value) AS min_value,
       max(value) AS max_value
FROM timepoint_scores
GROUP BY day, score_name
WITH NO DATA;

SELECT add_continuous_aggregate_policy('cohort_daily',
    start_offset => INTERVAL '400 days',
    end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '1 hour');
