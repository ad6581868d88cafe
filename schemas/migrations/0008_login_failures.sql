-- The app's sign-in back-off counts recent failed sign-ins per user name and per client
-- address from audit_log (core.db.users.recent_failures). The per-user count is served by
-- audit_log_entity; this partial index serves the per-address one, which would otherwise scan
-- every audit row of the window.
CREATE INDEX IF NOT EXISTS audit_log_login_failures_by_address
    ON audit_log ((detail->>'address'), at)
    WHERE entity = 'user' AND action = 'login_failed';
