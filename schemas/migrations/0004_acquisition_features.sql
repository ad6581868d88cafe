-- The features of each scored acquisition (burden, radiomics, spectral, peritumoural) with their
-- provenance (series, keV, kernel, mask source, registration quality, feature configuration).
-- The response models train on these; one row per acquisition and feature-extractor version.

CREATE TABLE acquisition_features (
    source_event_id   uuid NOT NULL REFERENCES acquisitions (event_id),
    patient           text NOT NULL REFERENCES patients (pseudonym),
    observed_at       timestamptz NOT NULL,
    extractor         text NOT NULL,
    extractor_version text NOT NULL,
    features          jsonb NOT NULL,
    provenance        jsonb NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source_event_id, extractor, extractor_version)
);
CREATE INDEX acquisition_features_patient ON acquisition_features (patient, observed_at);
