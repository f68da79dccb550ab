//! The codes Latchkey sends (C6): by SMS to a verified mobile number or by email to the designated
//! email. One place issues them (a new code replaces the old one of the same purpose), delivers
//! them within the send limits, and checks them (constant time, single use, 10 minutes).
//!
//! The send limits are counters in the store, so they hold across nodes: per user (SMS and
//! email), per mobile number and per company (SMS pumping: a script making Latchkey text premium
//! numbers it controls).

use latchkey_core::flows::UserFacing;
use latchkey_core::secret::TokenHash;
use latchkey_core::two_factor::one_time_code::{self, Channel, CodeError, CodePurpose, OneTimeCode};
use latchkey_store::{StoredCode, User};

use super::{Actor, AppError, ErrorKind, Latchkey, RequestContext};
use crate::mail::templates::{self, EmailCodePurpose};
use crate::sms::{message_for_code, OutgoingSms, SmsPurpose};

/// How a code's message reads, by what it is for.
fn sms_wording(purpose: CodePurpose) -> SmsPurpose {
    match purpose {
        CodePurpose::SignInSms | CodePurpose::SignInEmail => SmsPurpose::SignIn,
        CodePurpose::EnrollSms => SmsPurpose::VerifyNumber,
        _ => SmsPurpose::Verification,
    }
}

fn email_wording(purpose: CodePurpose) -> EmailCodePurpose {
    match purpose {
        CodePurpose::SignInSms | CodePurpose::SignInEmail => EmailCodePurpose::SignIn,
        CodePurpose::EnrollEmail => EmailCodePurpose::EnrollEmail,
        CodePurpose::VerifyEmail => EmailCodePurpose::VerifyEmail,
        CodePurpose::EnrollSms | CodePurpose::Verification => EmailCodePurpose::Verification,
    }
}

impl Latchkey {
    /// Issues a new code for `purpose` (replacing the last one) and sends it over `channel`.
    pub(super) async fn send_code(&self, user: &User, purpose: CodePurpose, channel: &Channel, ctx: &RequestContext) -> Result<(), AppError> {
        // A locked account gets no codes either: no texts for a guesser to trigger.
        self.ensure_not_locked(user).await?;
        self.within_send_limits(user, channel).await?;
        let now = self.now();
        let code = OneTimeCode::generate();
        let stored = StoredCode {
            code_hash: code.hash().as_str().to_owned(),
            target: Some(channel.clone()),
            created_at: now,
            expires_at: OneTimeCode::expires_at(now),
            used_at: None,
        };
        self.store.issue_code(user.id, purpose, &stored).await?;
        let delivered = match channel {
            Channel::Sms(number) => {
                let sms = OutgoingSms { to: number.as_str().to_owned(), body: message_for_code(&user.company_name, code.expose(), sms_wording(purpose)) };
                match self.sms.send(&sms, self.now()).await {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::error!(error = %e, to = %number.masked(), "text message not sent");
                        false
                    }
                }
            }
            Channel::Email(address) => {
                self.send(templates::one_time_code(address, &user.company_name, &user.login_name, code.expose(), email_wording(purpose))).await
            }
        };
        metrics::counter!("latchkey_codes_sent_total", "channel" => if matches!(channel, Channel::Sms(_)) { "sms" } else { "email" }, "delivered" => if delivered { "yes" } else { "no" }).increment(1);
        if !delivered {
            return Err(AppError::new(
                ErrorKind::Unavailable { retry_after: None },
                "delivery_failed",
                "The code could not be sent just now. Try again in a moment, or use another method.",
            ));
        }
        let mut audit = self.audit("code_sent", Some(user.company_id), Actor::User(user.id), Some(user.id), ctx);
        audit.detail = format!("{} to {}", purpose.as_str(), channel.shown());
        self.store.append_audit(&audit).await?;
        Ok(())
    }

    /// Counts this send against the user, and for a text against the number and the company; 429
    /// with Retry-After (the end of the hour) when any is over its limit.
    async fn within_send_limits(&self, user: &User, channel: &Channel) -> Result<(), AppError> {
        let l = &self.limits;
        let now = self.now();
        let mut counters = vec![(l.sends_per_user, l.sends_per_user.key(user.id))];
        if let Channel::Sms(number) = channel {
            counters.push((l.sends_per_number, l.sends_per_number.key(number.as_str())));
            counters.push((l.sends_per_company, l.sends_per_company.key(user.company_id)));
        }
        for (limit, key) in counters {
            if self.store.count_send(&key, limit.window_start(now)).await? > limit.limit {
                metrics::counter!("latchkey_code_sends_refused_total").increment(1);
                let secs = limit.retry_after(now);
                return Err(AppError::throttled(
                    secs,
                    format!("Too many codes were sent. Try again in {} minute(s), or use another method.", secs.div_ceil(60)),
                ));
            }
        }
        Ok(())
    }

    /// Checks a presented code for `purpose` and consumes it; returns the channel it was sent
    /// over. A wrong code counts against the account's second-factor lock; a typo (not six
    /// digits), an expired or a used code say so without counting.
    pub(super) async fn accept_code(&self, user: &User, purpose: CodePurpose, presented: &str, ctx: &RequestContext) -> Result<Channel, AppError> {
        let stored = self.check_code(user, purpose, presented, ctx).await?;
        // The single use: of two requests racing with the same code, one row update wins.
        if !self.store.consume_code(user.id, purpose, &stored.code_hash, self.now()).await? {
            return Err(AppError::from_flow(ErrorKind::Unauthorized, &CodeError::Used));
        }
        stored.target.ok_or_else(AppError::internal)
    }

    /// Checks a presented code for `purpose` without spending it: the live code it matches, or
    /// the refusal `accept_code` describes.
    pub(super) async fn check_code(&self, user: &User, purpose: CodePurpose, presented: &str, ctx: &RequestContext) -> Result<StoredCode, AppError> {
        self.ensure_not_locked(user).await?;
        let stored = self.store.code(user.id, purpose).await?;
        let Some(stored) = stored else {
            // Nothing was sent: still a guess to count, or a script could probe for free.
            return Err(self.wrong_code(user, "There is no code to check: send a code first.", ctx).await);
        };
        let hash = TokenHash::from_stored(stored.code_hash.clone());
        match one_time_code::check(&hash, stored.expires_at, stored.used_at.is_some(), presented, self.now()) {
            Ok(()) => Ok(stored),
            Err(CodeError::Malformed) => Err(AppError::field("code", CodeError::Malformed.message())),
            Err(CodeError::Wrong) => Err(self.wrong_code(user, &CodeError::Wrong.message(), ctx).await),
            Err(e) => Err(AppError::from_flow(ErrorKind::Unauthorized, &e)),
        }
    }
}
