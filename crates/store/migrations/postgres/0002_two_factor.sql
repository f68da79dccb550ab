-- Two-factor authentication: company policy, methods, recovery codes, one-time codes,
-- second-factor sign-in flows and restricted (enrolment-only) sessions.
ALTER TABLE companies ADD COLUMN two_factor_enabled BIGINT NOT NULL DEFAULT 0;
ALTER TABLE companies ADD COLUMN two_factor_mode TEXT NOT NULL DEFAULT 'optional';
ALTER TABLE companies ADD COLUMN allowed_methods TEXT NOT NULL DEFAULT 'totp,sms,email';
ALTER TABLE companies ADD COLUMN default_method TEXT;
ALTER TABLE companies ADD COLUMN default_method_locked BIGINT NOT NULL DEFAULT 0;

ALTER TABLE users ADD COLUMN preferred_method TEXT;

-- One row per enabled method of a user. TOTP seeds are sealed (AEAD) with the key named by
-- totp_key_id; totp_last_step is the last accepted time step, only ever moved forward.
CREATE TABLE two_factor_methods (
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    method TEXT NOT NULL,
    detail TEXT,
    totp_sealed TEXT,
    totp_key_id TEXT,
    totp_last_step BIGINT,
    enabled_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, method)
);

-- A TOTP secret shown to the user but not yet confirmed with a code.
CREATE TABLE totp_enrollments (
    user_id BIGINT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    totp_sealed TEXT NOT NULL,
    totp_key_id TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE recovery_codes (
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    code_hash TEXT NOT NULL,
    used_at BIGINT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, code_hash)
);

-- SMS and email codes: one live code per user and purpose; a new one replaces the old.
CREATE TABLE one_time_codes (
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    purpose TEXT NOT NULL,
    code_hash TEXT NOT NULL,
    target TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT,
    PRIMARY KEY (user_id, purpose)
);

-- A sign-in waiting for its second factor (or for enrolment): the password step is done.
CREATE TABLE sign_in_flows (
    id_hash TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    state TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    completed_at BIGINT
);

-- Sessions that may only reach enrolment (2FA required, no method yet).
ALTER TABLE sessions ADD COLUMN kind TEXT NOT NULL DEFAULT 'full';

-- Rate limits on sending codes (SMS pumping): one row per key and window.
CREATE TABLE send_counters (
    key TEXT NOT NULL,
    window_start BIGINT NOT NULL,
    sent BIGINT NOT NULL,
    PRIMARY KEY (key, window_start)
);
