-- Least privilege: group roles (NOLOGIN) that the database administrator grants to the login
-- users of each part of irtmon. The migrations' own role keeps ownership of the schema.
--   irtmon_worker: the stream workers write events, scores, measurements, features, alerts,
--                  dead letters and the audit log; they read the model registry; they cannot
--                  read the app's users.
--   irtmon_app:    the monitoring app reads the clinical tables and writes only alert actions,
--                  the audit log and its users' last login; it cannot write scores.
-- Where the migrating role may not create roles (a managed server), this step only says so:
-- create the two roles and re-run the grants below by hand.
DO $$
DECLARE
    worker_tables text[] := ARRAY['patients', 'acquisitions', 'treatment_events',
        'timepoint_scores', 'tumour_measurements', 'acquisition_features', 'alerts',
        'dead_letters'];
    read_tables text[] := ARRAY['patients', 'acquisitions', 'treatment_events',
        'timepoint_scores', 'tumour_measurements', 'acquisition_features', 'alerts',
        'dead_letters', 'audit_log', 'model_registry', 'cohort_daily'];
    t text;
BEGIN
    BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'irtmon_worker') THEN
            CREATE ROLE irtmon_worker NOLOGIN;
        END IF;
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'irtmon_app') THEN
            CREATE ROLE irtmon_app NOLOGIN;
        END IF;
    EXCEPTION WHEN insufficient_privilege THEN
        RAISE NOTICE 'irtmon: cannot create roles irtmon_worker and irtmon_app (%); '
            'create them and apply the grants of 0005_roles.sql by hand', SQLERRM;
        RETURN;
    END;
    EXECUTE 'GRANT USAGE ON SCHEMA public TO irtmon_worker, irtmon_app';
    FOREACH t IN ARRAY worker_tables LOOP
        EXECUTE format('GRANT SELECT, INSERT, UPDATE ON %I TO irtmon_worker', t);
    END LOOP;
    EXECUTE 'GRANT SELECT, INSERT ON audit_log TO irtmon_worker';
    EXECUTE 'GRANT SELECT ON model_registry TO irtmon_worker';
    EXECUTE 'GRANT USAGE ON SEQUENCE audit_log_id_seq TO irtmon_worker, irtmon_app';
    FOREACH t IN ARRAY read_tables LOOP
        EXECUTE format('GRANT SELECT ON %I TO irtmon_app', t);
    END LOOP;
    EXECUTE 'GRANT SELECT ON app_users, app_user_cohorts TO irtmon_app';
    EXECUTE 'GRANT UPDATE (last_login_at, updated_at) ON app_users TO irtmon_app';
    EXECUTE 'GRANT UPDATE ON alerts TO irtmon_app';
    EXECUTE 'GRANT INSERT ON audit_log TO irtmon_app';
END;
$$;
