-- Access to the monitoring app: users, their role, a password hash (argon2id) and the cohorts
-- each may see. Logins and alert actions are written to audit_log (append-only, from 0001).

CREATE TABLE app_users (
    username       text PRIMARY KEY CHECK (username ~ '^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$'),
    role           text NOT NULL CHECK (role IN ('clinician', 'researcher', 'admin')),
    password_hash  text CHECK (password_hash IS NULL OR password_hash LIKE '$argon2%'),
    oidc_subject   text UNIQUE,
    active         boolean NOT NULL DEFAULT true,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    last_login_at  timestamptz
);
COMMENT ON TABLE app_users IS
    'Monitoring-app users. password_hash is an argon2id hash (NULL: single sign-on only); '
    'oidc_subject is the e-mail (or sub) the identity provider returns for st.login.';

CREATE TABLE app_user_cohorts (
    username  text NOT NULL REFERENCES app_users (username) ON DELETE CASCADE,
    cohort    text NOT NULL,
    PRIMARY KEY (username, cohort)
);
COMMENT ON TABLE app_user_cohorts IS
    'Cohorts (patients.cohort) a clinician or researcher may see; admins see every cohort.';

CREATE INDEX patients_cohort ON patients (cohort);
CREATE INDEX alerts_patient ON alerts (patient, opened_at DESC);
CREATE INDEX timepoint_scores_name_patient ON timepoint_scores (score_name, patient, observed_at);
