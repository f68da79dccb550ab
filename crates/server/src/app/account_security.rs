//! Account Security's changes to an account's methods (C6 point 7), run on
//! `core::flows::enrolment`: removing a method, new recovery codes and the default method. A
//! removal or new codes need a proof (the verification code, or a code from a method that stays),
//! spent in the change's own transaction.

use latchkey_core::flows::enrolment;
use latchkey_core::flows::second_factor::{self, Refusal, Spend};
use latchkey_core::flows::UserFacing;
use latchkey_core::two_factor::one_time_code::{self, Channel, CodeError, CodePurpose};
use latchkey_core::two_factor::recovery::RecoveryCodes;
use latchkey_core::two_factor::Method;
use latchkey_store::{FactorSpend, Proof, User};

use super::codes::sent_code_of;
use super::enrolment::enrolment_error;
use super::two_factor::method_label;
use super::{Actor, AppError, Latchkey, RequestContext};
use crate::mail::templates;

impl Latchkey {
    /// C6 point 7: a verification code for changes to 2FA. It goes to the designated email, or
    /// by text to the user's SMS method when `via` is SMS.
    pub async fn send_verification_code(&self, user: &User, via: Option<Method>, ctx: &RequestContext) -> Result<String, AppError> {
        let channel = match via {
            None | Some(Method::Email) => Channel::Email(user.designated_email.clone()),
            Some(Method::Sms) => self.channel_of(user, Method::Sms).await?.1,
            Some(Method::Totp) => return Err(AppError::field("via", "The authenticator app makes its own codes: enter one of those.")),
        };
        let shown = channel.shown();
        self.send_code(user, CodePurpose::Verification, &channel, ctx).await?;
        Ok(shown)
    }

    /// What proves the change is the owner's, to spend with it: the verification code sent to the
    /// designated email, or one from a method that stays (core's `verification_code_proves` and
    /// `authenticator_code_proves`). One wrong guess counts once against the lock.
    async fn proof_for_change(&self, user: &User, code: &str, removing: Option<Method>, ctx: &RequestContext) -> Result<FactorSpend, AppError> {
        self.ensure_not_locked(user).await?;
        if one_time_code::normalize(code).is_err() {
            return Err(AppError::field("code", "Enter the 6-digit verification code, or a code from your authenticator app."));
        }
        let now = self.now();
        let sent = self.store.code(user.id, CodePurpose::Verification).await?;
        if let Some(stored) = sent.filter(|s| enrolment::verification_code_proves(s.target.as_ref(), removing)) {
            if let Ok(Spend::Code { purpose, hash }) = second_factor::sent_code(CodePurpose::Verification, Some(&sent_code_of(&stored)), code, now) {
                return Ok(FactorSpend::Code { purpose, hash: hash.as_str().to_owned() });
            }
        }
        if enrolment::authenticator_code_proves(removing) {
            if let Some((secret, last)) = self.authenticator_of(user, &self.store.methods_of_user(user.id).await?)? {
                if let Ok(Spend::TotpStep(step)) = second_factor::authenticator_app(Some((&secret, last)), code, now) {
                    return Ok(FactorSpend::TotpStep(step));
                }
            }
        }
        Err(self.wrong_code(user, &CodeError::Wrong.message(), ctx).await)
    }

    /// Removes one method after a proof. Where the company requires 2FA the last method stays
    /// (409); when the last one goes, so do the recovery codes.
    pub async fn remove_method(&self, user: &User, method: Method, code: &str, ctx: &RequestContext) -> Result<(), AppError> {
        let company = self.company_two_factor(user.company_id).await?;
        enrolment::may_remove(&company, &self.user_methods(user.id).await?, method).map_err(enrolment_error)?;
        let proof = self.proof_for_change(user, code, Some(method), ctx).await?;
        let mut audit = self.audit("two_factor_removed", Some(user.company_id), Actor::User(user.id), Some(user.id), ctx);
        audit.detail = method.as_str().into();
        let Some(left) = self.store.remove_confirmed_method(user.id, method, Some(Proof { factor: &proof, at: self.now() }), &audit).await? else {
            return Err(self.spent_proof(user, &proof, ctx).await);
        };
        let change = if left == 0 {
            "Two-factor authentication was turned off: its last method and the recovery codes were removed".to_owned()
        } else {
            format!("The {} method was removed from two-factor authentication", method_label(method))
        };
        self.send(templates::security_notice(&user.designated_email, &user.company_name, &user.login_name, "Two-factor authentication method removed", &change, self.now()))
            .await;
        Ok(())
    }

    /// "Get new recovery codes": after a proof the whole set is replaced.
    pub async fn new_recovery_codes(&self, user: &User, code: &str, ctx: &RequestContext) -> Result<Vec<String>, AppError> {
        enrolment::may_renew_recovery_codes(&self.user_methods(user.id).await?).map_err(enrolment_error)?;
        let proof = self.proof_for_change(user, code, None, ctx).await?;
        let codes = RecoveryCodes::generate();
        let hashes: Vec<String> = codes.hashes().iter().map(|h| h.as_str().to_owned()).collect();
        let audit = self.audit("recovery_codes_regenerated", Some(user.company_id), Actor::User(user.id), Some(user.id), ctx);
        let now = self.now();
        if !self.store.replace_confirmed_recovery_codes(user.id, &hashes, now, Some(Proof { factor: &proof, at: now }), &audit).await? {
            return Err(self.spent_proof(user, &proof, ctx).await);
        }
        self.send(templates::security_notice(
            &user.designated_email,
            &user.company_name,
            &user.login_name,
            "New recovery codes",
            "The recovery codes were replaced with a new set",
            self.now(),
        ))
        .await;
        Ok(codes.displayed())
    }

    /// A proof a racing request spent first, refused as the second-factor step refuses it.
    async fn spent_proof(&self, user: &User, proof: &FactorSpend, ctx: &RequestContext) -> AppError {
        let refusal = match proof {
            FactorSpend::TotpStep(step) => Spend::TotpStep(*step).refusal_when_spent(),
            _ => Refusal::Stale(CodeError::Used),
        };
        self.refused(user, refusal, ctx).await
    }

    /// The user's own choice of pre-selected method, unless the company locked its default.
    pub async fn set_preferred_method(&self, user: &User, method: Method) -> Result<(), AppError> {
        let company = self.company_two_factor(user.company_id).await?;
        enrolment::may_prefer(&company, &self.user_methods(user.id).await?, method).map_err(enrolment_error)?;
        if self.store.preferred_method(user.id).await? == Some(method) {
            return Ok(());
        }
        self.store.set_preferred_method(user.id, Some(method)).await?;
        self.send(templates::security_notice(
            &user.designated_email,
            &user.company_name,
            &user.login_name,
            "Default two-factor method changed",
            &format!("The default two-factor method became the {}", method_label(method)),
            self.now(),
        ))
        .await;
        Ok(())
    }
}
