-- Plain PostgreSQL flavour of 0002: the same daily cohort summary, as a view over the table.

CREATE INDEX timepoint_scores_time_brin ON timepoint_scores USING brin (observed_at);
CREATE INDEX tumour_measurements_time_brin ON tumour_measurements USING brin (observed_at);

CREATE VIEW cohort_daily AS
SELECT date_trunc('day', observed_at) AS day,
       score_name,
       count(*)   AS n_scores,
       avg(value) AS mean_value,
       min(value) AS min_value,
       max(value) AS max_value
FROM timepoint_scores
GROUP BY 1, 2;
