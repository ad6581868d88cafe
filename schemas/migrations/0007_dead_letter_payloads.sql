-- Dead-letter payloads: kept for a retention period, read by one role alone.
-- A dead letter's original bytes (payload, message_key) may carry a clear identifier smuggled
-- into a bad event. The reason and the metadata stay readable as before; the bytes:
--   * are erased after IRTMON_DEADLETTER_PAYLOAD_RETENTION_DAYS by the worker's housekeeping
--     (payload and message_key set to NULL, payload_erased_at set), so payload may be NULL;
--   * are readable only by the group role irtmon_deadletters (NOLOGIN; grant it to the login
--     of the person or job that lists, shows and replays dead letters: `irtmon deadletters`).
--     irtmon_worker inserts them and may erase them (UPDATE of those columns), but reads only
--     the metadata; irtmon_app reads only the metadata.
ALTER TABLE dead_letters ALTER COLUMN payload DROP NOT NULL;
ALTER TABLE dead_letters ADD COLUMN payload_erased_at timestamptz;
CREATE INDEX dead_letters_dead_lettered_at ON dead_letters (dead_lettered_at)
    WHERE payload_erased_at IS NULL;

DO $$
DECLARE
    metadata text := 'event_id, source_topic, source_partition, source_offset, '
        'failed_event_id, patient, error_class, reason, dead_lettered_at, payload_erased_at';
BEGIN
    BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'irtmon_deadletters') THEN
            CREATE ROLE irtmon_deadletters NOLOGIN;
        END IF;
    EXCEPTION WHEN insufficient_privilege THEN
        RAISE NOTICE 'irtmon: cannot create role irtmon_deadletters (%); create it and apply '
            'the grants of 0007_dead_letter_payloads.sql by hand', SQLERRM;
        RETURN;
    END;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'irtmon_worker') THEN
        EXECUTE 'REVOKE SELECT, UPDATE ON dead_letters FROM irtmon_worker';
        EXECUTE format('GRANT SELECT (%s) ON dead_letters TO irtmon_worker', metadata);
        EXECUTE 'GRANT UPDATE (payload, message_key, payload_erased_at) ON dead_letters '
            'TO irtmon_worker';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'irtmon_app') THEN
        EXECUTE 'REVOKE SELECT ON dead_letters FROM irtmon_app';
        EXECUTE format('GRANT SELECT (%s) ON dead_letters TO irtmon_app', metadata);
    END IF;
    EXECUTE 'GRANT USAGE ON SCHEMA public TO irtmon_deadletters';
    EXECUTE 'GRANT SELECT ON dead_letters TO irtmon_deadletters';
    EXECUTE 'GRANT UPDATE (payload, message_key, payload_erased_at) ON dead_letters '
        'TO irtmon_deadletters';
    EXECUTE 'GRANT INSERT ON audit_log TO irtmon_deadletters';
    EXECUTE 'GRANT SELECT (id, action, entity, entity_id) ON audit_log TO irtmon_deadletters';
    EXECUTE 'GRANT USAGE ON SEQUENCE audit_log_id_seq TO irtmon_deadletters';
END;
$$;
