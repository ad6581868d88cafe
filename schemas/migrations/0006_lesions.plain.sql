-- Every lesion (issue #19), plain PostgreSQL flavour: one row per tracked lesion per imaging
-- acquisition, and one per acquisition for RECIST 1.1 / iRECIST over them. The TimescaleDB
-- flavour (0006_lesions.timescale.sql) has the same columns, lesion_measurements a hypertable.

CREATE TABLE lesion_measurements (
    source_event_id   uuid NOT NULL REFERENCES acquisitions (event_id),
    tracking_uid      text NOT NULL,
    patient           text NOT NULL REFERENCES patients (pseudonym),
    observed_at       timestamptz NOT NULL,
    tracking_id       text NOT NULL,
    label             text NOT NULL DEFAULT '',
    organ             text NOT NULL,
    is_node           boolean NOT NULL DEFAULT false,
    in_field          boolean,
    role              text NOT NULL CHECK (role IN ('target', 'non_target', 'new_target',
                                                    'new_non_target', 'normal_node')),
    status            text NOT NULL CHECK (status IN ('seen', 'not_seen', 'not_evaluable')),
    match             text NOT NULL,
    long_axis_mm      double precision CHECK (long_axis_mm >= 0),
    short_axis_mm     double precision CHECK (short_axis_mm >= 0),
    volume_ml         double precision CHECK (volume_ml >= 0),
    origin            text CHECK (origin IN ('annotated', 'propagated')),
    mask_source       text,
    segment_number    integer,
    reference_uid     text,
    series_uid        text,
    distance_mm       double precision,
    overlap           double precision,
    failure           text,
    features          jsonb NOT NULL DEFAULT '{}',
    model_name        text NOT NULL,
    model_version     text NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source_event_id, tracking_uid, observed_at),
    CHECK ((status = 'seen') = (long_axis_mm IS NOT NULL)),
    CHECK (status = 'seen' OR origin IS NULL)
);
CREATE INDEX lesion_measurements_patient ON lesion_measurements (patient, observed_at);
CREATE INDEX lesion_measurements_track ON lesion_measurements (patient, tracking_uid, observed_at);
COMMENT ON TABLE lesion_measurements IS
    'One row per tracked lesion per imaging acquisition: tracking UID and id, organ, in or out '
    'of the radiotherapy field, RECIST role, long and short axis, volume, how the mask was '
    'obtained and whether the lesion was seen. Keyed by the acquisition and the tracking UID, '
    'so a redelivery or a re-score rewrites the same rows.';

CREATE TABLE lesion_assessments (
    source_event_id      uuid PRIMARY KEY REFERENCES acquisitions (event_id),
    patient              text NOT NULL REFERENCES patients (pseudonym),
    observed_at          timestamptz NOT NULL,
    timepoint            integer NOT NULL CHECK (timepoint >= 0),
    irecist_state        smallint NOT NULL CHECK (irecist_state BETWEEN 0 AND 5),
    recist               text CHECK (recist IN ('CR', 'PR', 'SD', 'non-CR/non-PD', 'PD', 'NE')),
    target_response      text CHECK (target_response IN ('CR', 'PR', 'SD', 'PD', 'NE')),
    nontarget_response   text CHECK (nontarget_response IN ('CR', 'non-CR/non-PD', 'PD', 'NE')),
    reason               text NOT NULL DEFAULT '',
    sum_diameters_mm     double precision NOT NULL CHECK (sum_diameters_mm >= 0),
    nadir_mm             double precision,
    in_field_sum_mm      double precision NOT NULL CHECK (in_field_sum_mm >= 0),
    out_of_field_sum_mm  double precision NOT NULL CHECK (out_of_field_sum_mm >= 0),
    total_volume_ml      double precision NOT NULL CHECK (total_volume_ml >= 0),
    new_lesions          integer NOT NULL CHECK (new_lesions >= 0),
    new_appeared         integer NOT NULL CHECK (new_appeared >= 0),
    lesions_seen         integer NOT NULL CHECK (lesions_seen >= 0),
    lesions_not_evaluable integer NOT NULL CHECK (lesions_not_evaluable >= 0),
    failures             jsonb NOT NULL DEFAULT '[]',
    tracking_state       jsonb NOT NULL,
    model_name           text NOT NULL,
    model_version        text NOT NULL,
    created_at           timestamptz NOT NULL DEFAULT now(),
    CHECK ((timepoint = 0) = (recist IS NULL))
);
CREATE INDEX lesion_assessments_patient ON lesion_assessments (patient, observed_at);
COMMENT ON TABLE lesion_assessments IS
    'Per imaging acquisition, over its lesions: RECIST 1.1 (overall, target, non-target) and '
    'the iRECIST state (code as in irecist_state scores), the sums derived from the lesions '
    '(targets; in-field; out-of-field), new-lesion counts, the lesions that could not be read, '
    'and the lesion tracking state the next acquisition starts from. The one source of the '
    'per-timepoint response of a patient whose lesions are tracked.';
CREATE INDEX lesion_measurements_time_brin ON lesion_measurements USING brin (observed_at);

-- The roles of 0005, when they exist: workers write lesions, the app reads them.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'irtmon_worker') THEN
        EXECUTE 'GRANT SELECT, INSERT, UPDATE, DELETE ON lesion_measurements, lesion_assessments '
                'TO irtmon_worker';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'irtmon_app') THEN
        EXECUTE 'GRANT SELECT ON lesion_measurements, lesion_assessments TO irtmon_app';
    END IF;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'irtmon: cannot grant on the lesion tables (%); grant by hand as in 0005',
        SQLERRM;
END;
$$;
