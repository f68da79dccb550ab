-- Confirmation links for additional emails (C7): a link is bound to the row it was sent for and to
-- the address itself, so removing the email (and adding it again: a new row) or any change of the
-- address kills the link. SET NULL keeps the used/replaced history of a removed address's link.
ALTER TABLE email_links ADD COLUMN user_email_id INTEGER REFERENCES user_emails(id) ON DELETE SET NULL;
ALTER TABLE email_links ADD COLUMN email TEXT;
CREATE INDEX email_links_user_email ON email_links (user_email_id);
