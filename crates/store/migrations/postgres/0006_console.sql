-- The operator's API tokens and an audit trail that names them. A token is stored as the SHA-256
-- of its secret; `company_id` NULL means operator scope (every company), else that company only.
CREATE TABLE api_tokens (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    company_id BIGINT REFERENCES companies(id),
    created_at BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at BIGINT
);

ALTER TABLE audit_events ADD COLUMN actor_token_id BIGINT;
CREATE INDEX audit_events_company_id ON audit_events (company_id, id);
CREATE INDEX audit_events_created ON audit_events (created_at);

-- The audit log is append-only: no statement may rewrite an event. Only the retention purge
-- deletes, and only events older than the configured retention.
CREATE FUNCTION audit_events_refuse_update() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit events are append-only';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER audit_events_append_only BEFORE UPDATE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_refuse_update();
