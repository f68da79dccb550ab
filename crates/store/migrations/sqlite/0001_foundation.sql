-- Foundation: companies, users, emailed links, sessions, throttling, audit.
-- Times are Unix seconds (INTEGER) so SQLite and PostgreSQL hold the same values.
CREATE TABLE companies (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    domain TEXT NOT NULL UNIQUE,
    password_min_length INTEGER NOT NULL DEFAULT 8,
    created_at INTEGER NOT NULL
);

CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    company_id INTEGER NOT NULL REFERENCES companies(id),
    extension TEXT NOT NULL,
    login_name TEXT NOT NULL UNIQUE,
    designated_email TEXT NOT NULL,
    designated_email_key TEXT NOT NULL,
    designated_email_verified_at INTEGER,
    role TEXT NOT NULL,
    state TEXT NOT NULL,
    password_hash TEXT,
    pin_hash TEXT,
    created_at INTEGER NOT NULL,
    activated_at INTEGER,
    last_sign_in_at INTEGER,
    UNIQUE (company_id, extension)
);
CREATE INDEX users_designated_email_key ON users (designated_email_key);

CREATE TABLE user_emails (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    email TEXT NOT NULL,
    email_key TEXT NOT NULL,
    verified_at INTEGER,
    created_at INTEGER NOT NULL,
    UNIQUE (user_id, email_key)
);
CREATE INDEX user_emails_email_key ON user_emails (email_key);

CREATE TABLE email_links (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    token_hash TEXT NOT NULL UNIQUE,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    purpose TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER,
    replaced_at INTEGER
);
CREATE INDEX email_links_user ON email_links (user_id, purpose);

CREATE TABLE sessions (
    id_hash TEXT PRIMARY KEY,
    handle TEXT NOT NULL UNIQUE,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    client_ip TEXT,
    user_agent TEXT
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE throttle (
    key TEXT PRIMARY KEY,
    window_start INTEGER NOT NULL,
    failures INTEGER NOT NULL,
    locked_until INTEGER
);

CREATE TABLE audit_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    company_id INTEGER,
    actor_user_id INTEGER,
    target_user_id INTEGER,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL,
    client_ip TEXT,
    user_agent TEXT,
    created_at INTEGER NOT NULL
);
CREATE INDEX audit_events_company ON audit_events (company_id, created_at);
