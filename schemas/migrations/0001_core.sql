-- irtmon core schema: patients, acquisitions, treatment, scores, measurements, alerts,
-- audit log, model registry and dead letters. Plain PostgreSQL; the time-series specifics
-- (hypertables, compression, continuous aggregates) follow in 0002.

CREATE TABLE patients (
    pseudonym      text PRIMARY KEY CHECK (pseudonym ~ '^psn-[0-9a-f]{16}$'),
    cohort         text NOT NULL DEFAULT 'default',
    arm            text,
    first_seen_at  timestamptz NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE patients IS 'One row per patient, by keyed-hash pseudonym only; no clear identifier.';

CREATE TABLE acquisitions (
    event_id      uuid PRIMARY KEY,
    patient       text NOT NULL REFERENCES patients (pseudonym),
    kind          text NOT NULL CHECK (kind IN ('imaging', 'biopsy')),
    modality      text NOT NULL CHECK (modality IN ('CT', 'PCCT', 'WSI')),
    acquired_at   timestamptz NOT NULL,
    study_uid     text,
    series_uids   text[] NOT NULL DEFAULT '{}',
    specimen_id   text,
    purpose       text,
    location      jsonb NOT NULL,
    payload       jsonb NOT NULL,
    status        text NOT NULL DEFAULT 'received'
                  CHECK (status IN ('received', 'scored', 'failed')),
    received_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX acquisitions_patient_time ON acquisitions (patient, acquired_at);
COMMENT ON TABLE acquisitions IS 'Every imaging or biopsy event accepted, keyed by its event id.';

CREATE TABLE treatment_events (
    event_id      uuid PRIMARY KEY,
    patient       text NOT NULL REFERENCES patients (pseudonym),
    occurred_at   timestamptz NOT NULL,
    kind          text NOT NULL
                  CHECK (kind IN ('rt_course_start', 'rt_fraction', 'immunotherapy_dose')),
    detail        jsonb NOT NULL,
    received_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX treatment_events_patient_time ON treatment_events (patient, occurred_at);

CREATE TABLE timepoint_scores (
    event_id         uuid NOT NULL,
    patient          text NOT NULL REFERENCES patients (pseudonym),
    observed_at      timestamptz NOT NULL,
    source_event_id  uuid NOT NULL,
    score_name       text NOT NULL CHECK (score_name ~ '^[a-z][a-z0-9_]*$'),
    value            double precision NOT NULL,
    lower            double precision,
    upper            double precision,
    unit             text,
    model_name       text NOT NULL,
    model_version    text NOT NULL,
    inputs           text[] NOT NULL DEFAULT '{}',
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event_id, observed_at),
    CHECK (lower IS NULL OR lower <= value),
    CHECK (upper IS NULL OR upper >= value)
);
CREATE INDEX timepoint_scores_patient ON timepoint_scores (patient, score_name, observed_at DESC);
COMMENT ON TABLE timepoint_scores IS
    'One score per patient, timepoint, score name and model version; event_id is derived from '
    'them, so re-delivery upserts the same row and re-scoring with a new version adds beside it.';

CREATE TABLE tumour_measurements (
    source_event_id        uuid NOT NULL,
    lesion_id              text NOT NULL,
    patient                text NOT NULL REFERENCES patients (pseudonym),
    observed_at            timestamptz NOT NULL,
    series_uid             text,
    volume_ml              double precision CHECK (volume_ml >= 0),
    longest_diameter_mm    double precision CHECK (longest_diameter_mm >= 0),
    mask_source            text CHECK (mask_source IN ('rtstruct', 'seg', 'propagated', 'detected')),
    registration_quality   double precision,
    model_name             text NOT NULL,
    model_version          text NOT NULL,
    created_at             timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source_event_id, lesion_id, observed_at)
);
CREATE INDEX tumour_measurements_patient ON tumour_measurements (patient, observed_at DESC);

CREATE TABLE alerts (
    alert_id          uuid PRIMARY KEY,
    patient           text NOT NULL REFERENCES patients (pseudonym),
    kind              text NOT NULL
                      CHECK (kind IN ('suspected_non_response', 'confirmed_progression')),
    status            text NOT NULL DEFAULT 'open'
                      CHECK (status IN ('open', 'acknowledged', 'resolved', 'dismissed')),
    probability       double precision NOT NULL CHECK (probability BETWEEN 0 AND 1),
    change_at         timestamptz,
    summary           text NOT NULL,
    recommendation    text NOT NULL,
    signals           text[] NOT NULL DEFAULT '{}',
    model_versions    jsonb NOT NULL DEFAULT '{}',
    opened_at         timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    acknowledged_by   text,
    acknowledged_at   timestamptz,
    closed_by         text,
    closed_at         timestamptz,
    close_reason      text,
    CHECK ((status IN ('resolved', 'dismissed')) = (closed_at IS NOT NULL)),
    CHECK (status <> 'dismissed' OR close_reason IS NOT NULL),
    CHECK (status <> 'acknowledged' OR acknowledged_at IS NOT NULL)
);
-- One active (open or acknowledged) alert per patient and kind: updated, never duplicated.
CREATE UNIQUE INDEX alerts_one_active ON alerts (patient, kind)
    WHERE status IN ('open', 'acknowledged');
CREATE INDEX alerts_status ON alerts (status, opened_at DESC);

CREATE TABLE audit_log (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,
    action      text NOT NULL,
    entity      text NOT NULL,
    entity_id   text,
    patient     text,
    detail      jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_entity ON audit_log (entity, entity_id, at);
CREATE INDEX audit_log_patient ON audit_log (patient, at);

-- The audit log is append-only: no update, no delete.
CREATE FUNCTION irtmon_audit_log_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only (% refused)', TG_OP;
END;
$$;
CREATE TRIGGER audit_log_append_only
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION irtmon_audit_log_append_only();

CREATE TABLE model_registry (
    name                 text NOT NULL,
    version              text NOT NULL,
    sha256               text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    path                 text NOT NULL,
    training_data_hash   text,
    metrics              jsonb NOT NULL DEFAULT '{}',
    card                 text,
    created_at           timestamptz NOT NULL DEFAULT now(),
    promoted             boolean NOT NULL DEFAULT false,
    promoted_at          timestamptz,
    PRIMARY KEY (name, version)
);
-- At most one promoted version per model name.
CREATE UNIQUE INDEX model_registry_one_promoted ON model_registry (name) WHERE promoted;

CREATE TABLE dead_letters (
    event_id           uuid PRIMARY KEY,
    source_topic       text NOT NULL,
    source_partition   integer NOT NULL,
    source_offset      bigint NOT NULL,
    failed_event_id    uuid,
    patient            text,
    error_class        text NOT NULL,
    reason             text NOT NULL,
    payload            bytea NOT NULL,
    message_key        bytea,
    dead_lettered_at   timestamptz NOT NULL,
    UNIQUE (source_topic, source_partition, source_offset)
);
