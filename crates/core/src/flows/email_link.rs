//! The emailed links: the welcome email's Complete Setup link (24 hours), the password reset link
//! (3 hours) and the confirmation link sent to an additional email (24 hours). One mechanism with
//! three lifetimes: `Valid → Used`, `Valid → Expired`, or `Valid → Replaced` when a newer link of
//! the same purpose is sent (or, for a confirmation link, its address is removed).

use time::{Duration, OffsetDateTime};

use super::UserFacing;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkPurpose {
    Welcome,
    PasswordReset,
    /// Proves an additional email reaches someone: only then can it sign in by SSO (C7).
    EmailConfirmation,
}

impl LinkPurpose {
    /// The seed: "welcome emails have a 24-hour expiry"; "you only have 3 hours to reset".
    pub fn lifetime(self) -> Duration {
        match self {
            LinkPurpose::Welcome => Duration::hours(24),
            LinkPurpose::PasswordReset => Duration::hours(3),
            // Like a welcome link: the address is often an assistant's or a shared desk's, read
            // the next working day. Not longer: a confirmed address can sign in by SSO, so an
            // unopened link should not lie in a mailbox for days.
            LinkPurpose::EmailConfirmation => Duration::hours(24),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LinkPurpose::Welcome => "welcome",
            LinkPurpose::PasswordReset => "password_reset",
            LinkPurpose::EmailConfirmation => "email_confirmation",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "welcome" => Some(LinkPurpose::Welcome),
            "password_reset" => Some(LinkPurpose::PasswordReset),
            "email_confirmation" => Some(LinkPurpose::EmailConfirmation),
            _ => None,
        }
    }
}

/// A link as stored (its token is only a hash in the store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailLink {
    pub purpose: LinkPurpose,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub used_at: Option<OffsetDateTime>,
    pub replaced_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    Valid,
    Used,
    Replaced,
    Expired,
}

impl EmailLink {
    pub fn issue(purpose: LinkPurpose, now: OffsetDateTime) -> Self {
        Self { purpose, created_at: now, expires_at: now + purpose.lifetime(), used_at: None, replaced_at: None }
    }

    /// Used wins over replaced wins over expired: the person is told the most useful fact.
    pub fn state(&self, now: OffsetDateTime) -> LinkState {
        if self.used_at.is_some() {
            LinkState::Used
        } else if self.replaced_at.is_some() {
            LinkState::Replaced
        } else if now >= self.expires_at {
            LinkState::Expired
        } else {
            LinkState::Valid
        }
    }

    /// `Ok` while the link can still be used.
    pub fn check(&self, now: OffsetDateTime) -> Result<(), LinkError> {
        let purpose = self.purpose;
        match self.state(now) {
            LinkState::Valid => Ok(()),
            LinkState::Used => Err(LinkError::Used(purpose)),
            LinkState::Replaced => Err(LinkError::Replaced(purpose)),
            LinkState::Expired => Err(LinkError::Expired(purpose)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("link not found")]
    NotFound,
    #[error("link expired")]
    Expired(LinkPurpose),
    #[error("link used")]
    Used(LinkPurpose),
    #[error("link replaced")]
    Replaced(LinkPurpose),
}

impl UserFacing for LinkError {
    fn code(&self) -> &'static str {
        match self {
            LinkError::NotFound => "link_not_found",
            LinkError::Expired(_) => "link_expired",
            LinkError::Used(_) => "link_used",
            LinkError::Replaced(_) => "link_replaced",
        }
    }

    fn message(&self) -> String {
        use LinkPurpose::*;
        match self {
            LinkError::NotFound => "This link is not valid. Check that you copied the whole link from the email.".into(),
            LinkError::Expired(Welcome) => "This welcome link has expired: welcome links work for 24 hours. Ask your office manager to send a new welcome email.".into(),
            LinkError::Expired(PasswordReset) => "This password reset link has expired: reset links work for 3 hours. Use Forgot Password to get a new one.".into(),
            LinkError::Used(Welcome) => "This welcome link was already used: your account is set up. Sign in with your login name and password, or use Forgot Password.".into(),
            LinkError::Used(PasswordReset) => "This password reset link was already used. Sign in with your new password, or use Forgot Password to get a new link.".into(),
            LinkError::Replaced(Welcome) => "A newer welcome email was sent, and only its link works. Use the link in the latest welcome email.".into(),
            LinkError::Replaced(PasswordReset) => "A newer password reset email was sent, and only its link works. Use the link in the latest email.".into(),
            LinkError::Expired(EmailConfirmation) => "This confirmation link has expired: confirmation links work for 24 hours. Ask your office manager to remove the email and add it again, which sends a new link.".into(),
            LinkError::Used(EmailConfirmation) => "This email address was already confirmed with this link. There is nothing else to do.".into(),
            LinkError::Replaced(EmailConfirmation) => "This confirmation link no longer works: the email address was removed from the account. Ask your office manager if it should be added again.".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn welcome_links_last_24_hours_and_reset_links_3() {
        let t0 = datetime!(2026-11-23 09:00 UTC);
        let welcome = EmailLink::issue(LinkPurpose::Welcome, t0);
        assert_eq!(welcome.state(t0 + Duration::hours(24) - Duration::seconds(1)), LinkState::Valid);
        assert_eq!(welcome.state(t0 + Duration::hours(24)), LinkState::Expired);
        let reset = EmailLink::issue(LinkPurpose::PasswordReset, t0);
        assert_eq!(reset.state(t0 + Duration::minutes(179)), LinkState::Valid);
        assert_eq!(reset.state(t0 + Duration::hours(3)), LinkState::Expired);
        let confirmation = EmailLink::issue(LinkPurpose::EmailConfirmation, t0);
        assert_eq!(confirmation.state(t0 + Duration::hours(24)), LinkState::Expired);
    }

    #[test]
    fn purposes_round_trip_through_their_stored_names() {
        for p in [LinkPurpose::Welcome, LinkPurpose::PasswordReset, LinkPurpose::EmailConfirmation] {
            assert_eq!(LinkPurpose::parse(p.as_str()), Some(p));
        }
    }

    #[test]
    fn used_and_replaced_links_say_so_even_after_expiry() {
        let t0 = datetime!(2026-11-23 09:00 UTC);
        let mut link = EmailLink::issue(LinkPurpose::Welcome, t0);
        link.replaced_at = Some(t0);
        assert_eq!(link.check(t0 + Duration::days(3)), Err(LinkError::Replaced(LinkPurpose::Welcome)));
        link.used_at = Some(t0);
        assert_eq!(link.check(t0), Err(LinkError::Used(LinkPurpose::Welcome)));
        assert_eq!(LinkError::Used(LinkPurpose::Welcome).code(), "link_used");
    }
}
