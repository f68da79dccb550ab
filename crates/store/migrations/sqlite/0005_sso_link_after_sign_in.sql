-- Linking an identity asks for the account's password and, where it has one, its second factor.
-- A waiting identity is attached to the sign-in flow that proves the account, and linked when
-- that flow completes (never before).
ALTER TABLE sso_pending ADD COLUMN flow_hash TEXT;
ALTER TABLE sso_pending ADD COLUMN user_id INTEGER;
CREATE INDEX sso_pending_flow ON sso_pending (flow_hash);
