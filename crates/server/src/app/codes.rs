//! The codes Latchkey sends (C6): by SMS to a verified mobile number or by email to the designated
//! email. One place issues them (a new code replaces the old one of the same purpose), delivers
//! them within the send limits, and checks them (constant time, single use, 10 minutes).
//!
//! The send limits are counters in the store, so they hold across nodes: per user (SMS and
//! email), per mobile number and per company (SMS pumping: a script making Latchkey text premium
//! numbers it controls).

use latchkey_core::flows::second_factor::{self, SentCode, Spend};
use latchkey_core::secret::TokenHash;
use latchkey_core::two_factor::one_time_code::{Channel, CodePurpose, OneTimeCode};
use latchkey_store::{FactorSpend, StoredCode, User};

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

    /// Judges a presented code for `purpose` with core's handler, spending nothing: what to spend
    /// in the transaction of the change it confirms, and the channel the code went over. A wrong
    /// code counts against the account's second-factor lock; a typo (not six digits), an expired
    /// or a used code say so without counting.
    pub(super) async fn code_proof(&self, user: &User, purpose: CodePurpose, presented: &str, ctx: &RequestContext) -> Result<(FactorSpend, Option<Channel>), AppError> {
        self.ensure_not_locked(user).await?;
        let stored = self.store.code(user.id, purpose).await?;
        match second_factor::sent_code(purpose, stored.as_ref().map(sent_code_of).as_ref(), presented, self.now()) {
            Ok(Spend::Code { purpose, hash }) => Ok((FactorSpend::Code { purpose, hash: hash.as_str().to_owned() }, stored.and_then(|s| s.target))),
            Ok(_) => Err(AppError::internal()),
            Err(refusal) => Err(self.refused(user, refusal, ctx).await),
        }
    }
}

/// A stored code as core's handlers judge it.
pub(super) fn sent_code_of(stored: &StoredCode) -> SentCode {
    SentCode { hash: TokenHash::from_stored(stored.code_hash.clone()), expires_at: stored.expires_at, used: stored.used_at.is_some() }
}
