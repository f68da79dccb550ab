-- Single sign-on with Google and Microsoft 365 (C7): the company's pilot switch and providers,
-- stored links, remembered account choices, and the short-lived state of a sign-in at a provider.
ALTER TABLE companies ADD COLUMN sso_enabled INTEGER NOT NULL DEFAULT 0;
-- Comma-separated providers the company enabled (google, microsoft).
ALTER TABLE companies ADD COLUMN sso_providers TEXT NOT NULL DEFAULT '';
-- Providers whose own MFA the office manager accepts in place of Latchkey's second factor.
ALTER TABLE companies ADD COLUMN sso_mfa_sufficient TEXT NOT NULL DEFAULT '';

-- A provider identity (provider + subject) linked to an account, by the account's password (and
-- second factor) once. One identity may link several accounts (a shared address).
CREATE TABLE sso_links (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    provider TEXT NOT NULL,
    subject TEXT NOT NULL,
    email TEXT,
    linked_at INTEGER NOT NULL,
    last_used_at INTEGER,
    UNIQUE (provider, subject, user_id)
);
CREATE INDEX sso_links_user ON sso_links (user_id);

-- The account chooser's remembered choice for an identity.
CREATE TABLE sso_choices (
    provider TEXT NOT NULL,
    subject TEXT NOT NULL,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    chosen_at INTEGER NOT NULL,
    PRIMARY KEY (provider, subject)
);

-- A trip to the provider: state (hashed), nonce and PKCE verifier, bound to the browser that
-- started it (hash of its binding cookie), used once.
CREATE TABLE sso_attempts (
    state_hash TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    browser_hash TEXT NOT NULL,
    nonce TEXT NOT NULL,
    pkce_verifier TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER
);

-- A checked identity waiting at the account chooser or the link page, named by a hashed token in
-- a cookie of the same browser.
CREATE TABLE sso_pending (
    id_hash TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    subject TEXT NOT NULL,
    email TEXT,
    trusted_email TEXT,
    browser_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER
);
