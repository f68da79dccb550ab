-- Foundation: companies, users, emailed links, sessions, throttling, audit.
-- Times are Unix seconds (INTEGER) so SQLite and PostgreSQL hold the same values.
CREATE TABLE companies (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name TEXT NOT NULL,
    domain TEXT NOT NULL UNIQUE,
    password_min_length BIGINT NOT NULL DEFAULT 8,
    created_at BIGINT NOT NULL
);

CREATE TABLE users (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    company_id BIGINT NOT NULL REFERENCES companies(id),
    extension TEXT NOT NULL,
    login_name TEXT NOT NULL UNIQUE,
    designated_email TEXT NOT NULL,
    designated_email_key TEXT NOT NULL,
    designated_email_verified_at BIGINT,
    role TEXT NOT NULL,
    state TEXT NOT NULL,
    password_hash TEXT,
    pin_hash TEXT,
    created_at BIGINT NOT NULL,
    activated_at BIGINT,
    last_sign_in_at BIGINT,
    UNIQUE (company_id, extension)
);
CREATE INDEX users_designated_email_key ON users (designated_email_key);

CREATE TABLE user_emails (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    email TEXT NOT NULL,
    email_key TEXT NOT NULL,
    verified_at BIGINT,
    created_at BIGINT NOT NULL,
    UNIQUE (user_id, email_key)
);
CREATE INDEX user_emails_email_key ON user_emails (email_key);

CREATE TABLE email_links (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    purpose TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT,
    replaced_at BIGINT
);
CREATE INDEX email_links_user ON email_links (user_id, purpose);

CREATE TABLE sessions (
    id_hash TEXT PRIMARY KEY,
    handle TEXT NOT NULL UNIQUE,
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    client_ip TEXT,
    user_agent TEXT
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE throttle (
    key TEXT PRIMARY KEY,
    window_start BIGINT NOT NULL,
    failures BIGINT NOT NULL,
    locked_until BIGINT
);

CREATE TABLE audit_events (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    company_id BIGINT,
    actor_user_id BIGINT,
    target_user_id BIGINT,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL,
    client_ip TEXT,
    user_agent TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX audit_events_company ON audit_events (company_id, created_at);
