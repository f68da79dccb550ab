-- The operator's API tokens and an audit trail that names them. A token is stored as the SHA-256
-- of its secret; `company_id` NULL means operator scope (every company), else that company only.
CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    company_id INTEGER REFERENCES companies(id),
    created_at INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at INTEGER
);

ALTER TABLE audit_events ADD COLUMN actor_token_id INTEGER;
CREATE INDEX audit_events_company_id ON audit_events (company_id, id);
CREATE INDEX audit_events_created ON audit_events (created_at);

-- The audit log is append-only: no statement may rewrite an event. Only the retention purge
-- deletes, and only events older than the configured retention.
CREATE TRIGGER audit_events_append_only BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit events are append-only');
END;
