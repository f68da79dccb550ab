//! The user's own two-factor methods beyond the authenticator app (C6): verifying the designated
//! email, enrolling SMS and email codes, codes at the sign-in step, and the changes that need a
//! verification code (removing a method, new recovery codes).

use latchkey_core::flows::sign_in::SecondFactorRequirement;
use latchkey_core::flows::UserFacing;
use latchkey_core::two_factor::one_time_code::{self, Channel, CodeError, CodePurpose};
use latchkey_core::two_factor::recovery::RecoveryCodes;
use latchkey_core::two_factor::{Method, TwoFactorMode, E164};
use latchkey_core::secret::TokenHash;
use latchkey_store::{FactorSpend, StoredMethod, User};

use super::two_factor::{flow_expired, method_label};
use super::{Actor, AppError, ErrorKind, Latchkey, RequestContext};
use crate::mail::templates;

fn email_not_verified() -> AppError {
    AppError::new(
        ErrorKind::Conflict,
        "email_not_verified",
        "Verify your designated email first: we send a code to it, and you enter the code.",
    )
}

impl Latchkey {
    /// Sends a code that proves the designated email reaches its owner.
    pub async fn request_email_verification(&self, user: &User, ctx: &RequestContext) -> Result<(), AppError> {
        if user.designated_email_verified_at.is_some() {
            return Err(AppError::new(ErrorKind::Conflict, "email_already_verified", "Your designated email is already verified."));
        }
        self.send_code(user, CodePurpose::VerifyEmail, &Channel::Email(user.designated_email.clone()), ctx).await
    }

    pub async fn confirm_email_verification(&self, user: &User, code: &str, ctx: &RequestContext) -> Result<(), AppError> {
        let Channel::Email(address) = self.accept_code(user, CodePurpose::VerifyEmail, code, ctx).await? else {
            return Err(AppError::internal());
        };
        // The code proves the address it went to: if the office manager changed the designated
        // email meanwhile, the new one is not verified by it.
        if !self.store.mark_email_verified(user.id, &address, self.now()).await? {
            return Err(AppError::new(ErrorKind::Conflict, "email_changed", "Your designated email changed after the code was sent. Send a new code."));
        }
        let mut audit = self.audit("email_verified", Some(user.company_id), Actor::User(user.id), Some(user.id), ctx);
        audit.detail = address;
        self.store.append_audit(&audit).await?;
        Ok(())
    }

    /// Step one of SMS: the number gets a code; it becomes a method only once the code comes back.
    /// Returns the number as it may be shown ("•••• 4477").
    pub async fn start_sms_enrollment(&self, user: &User, phone: &str, ctx: &RequestContext) -> Result<String, AppError> {
        self.require_allowed(user, Method::Sms).await?;
        let number = E164::parse(phone)
            .map_err(|_| AppError::field("phone", "Enter the mobile number in international format, starting with + and the country code, like +1 555 010 4477."))?;
        let masked = number.masked();
        self.send_code(user, CodePurpose::EnrollSms, &Channel::Sms(number), ctx).await?;
        Ok(masked)
    }

    pub async fn confirm_sms(&self, user: &User, code: &str, ctx: &RequestContext) -> Result<Option<Vec<String>>, AppError> {
        self.require_allowed(user, Method::Sms).await?;
        let Channel::Sms(number) = self.accept_code(user, CodePurpose::EnrollSms, code, ctx).await? else {
            return Err(AppError::internal());
        };
        self.enable(user, &StoredMethod { detail: Some(number.as_str().to_owned()), ..new_method(self, Method::Sms) }, ctx).await
    }

    /// Email codes go to the designated email, and only once it is verified.
    pub async fn start_email_enrollment(&self, user: &User, ctx: &RequestContext) -> Result<(), AppError> {
        self.require_allowed(user, Method::Email).await?;
        if user.designated_email_verified_at.is_none() {
            return Err(email_not_verified());
        }
        self.send_code(user, CodePurpose::EnrollEmail, &Channel::Email(user.designated_email.clone()), ctx).await
    }

    pub async fn confirm_email_method(&self, user: &User, code: &str, ctx: &RequestContext) -> Result<Option<Vec<String>>, AppError> {
        self.require_allowed(user, Method::Email).await?;
        let Channel::Email(address) = self.accept_code(user, CodePurpose::EnrollEmail, code, ctx).await? else {
            return Err(AppError::internal());
        };
        if user.designated_email_verified_at.is_none() || address != user.designated_email {
            return Err(email_not_verified());
        }
        self.enable(user, &StoredMethod { detail: Some(address), ..new_method(self, Method::Email) }, ctx).await
    }

    /// The methods a live sign-in flow may use now: the user's, as far as the company allows.
    pub(super) async fn flow_methods(&self, user: &User) -> Result<Vec<Method>, AppError> {
        match self.second_factor_requirement(user).await? {
            SecondFactorRequirement::Verify { methods, .. } => Ok(methods),
            _ => Err(flow_expired()),
        }
    }

    /// The second-factor step asks for a texted or emailed code. Answers the masked destination.
    pub async fn send_sign_in_code(&self, flow_token: &str, method: &str, ctx: &RequestContext) -> Result<String, AppError> {
        let (_, user) = self.live_flow(flow_token).await?;
        let method = match Method::parse(method) {
            Some(m @ (Method::Sms | Method::Email)) => m,
            _ => return Err(AppError::field("method", "Codes are sent by sms or email.")),
        };
        if !self.flow_methods(&user).await?.contains(&method) {
            return Err(method_unavailable());
        }
        let (purpose, channel) = self.channel_of(&user, method).await?;
        let shown = channel.shown();
        self.send_code(&user, purpose, &channel, ctx).await?;
        Ok(shown)
    }

    /// Where the sign-in code for an enrolled SMS or email method goes.
    async fn channel_of(&self, user: &User, method: Method) -> Result<(CodePurpose, Channel), AppError> {
        match method {
            Method::Sms => {
                let stored = self.store.methods_of_user(user.id).await?;
                let number = stored
                    .iter()
                    .find(|m| m.method == Method::Sms)
                    .and_then(|m| m.detail.as_deref())
                    .and_then(|d| E164::parse(d).ok())
                    .ok_or_else(method_unavailable)?;
                Ok((CodePurpose::SignInSms, Channel::Sms(number)))
            }
            Method::Email => {
                if user.designated_email_verified_at.is_none() {
                    return Err(email_not_verified());
                }
                Ok((CodePurpose::SignInEmail, Channel::Email(user.designated_email.clone())))
            }
            Method::Totp => Err(method_unavailable()),
        }
    }

    /// The code for the sign-in step, for SMS or email: checked here, spent with the flow.
    pub(super) async fn sign_in_code_to_spend(&self, user: &User, method: Method, code: &str, ctx: &RequestContext) -> Result<FactorSpend, AppError> {
        let purpose = if method == Method::Sms { CodePurpose::SignInSms } else { CodePurpose::SignInEmail };
        let stored = self.check_code(user, purpose, code, ctx).await?;
        Ok(FactorSpend::Code { purpose, hash: stored.code_hash })
    }

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

    /// Proves the change is the owner's: the verification code sent to the designated email, or
    /// one from a method that stays (a texted verification code unless SMS is going, an
    /// authenticator code unless the app is going). One wrong guess counts once against the lock.
    async fn confirm_change(&self, user: &User, code: &str, removing: Option<Method>, ctx: &RequestContext) -> Result<(), AppError> {
        self.ensure_not_locked(user).await?;
        let Ok(code) = one_time_code::normalize(code) else {
            return Err(AppError::field("code", "Enter the 6-digit verification code, or a code from your authenticator app."));
        };
        let now = self.now();
        if let Some(stored) = self.store.code(user.id, CodePurpose::Verification).await? {
            let from_staying = !(removing == Some(Method::Sms) && matches!(stored.target, Some(Channel::Sms(_))));
            let hash = TokenHash::from_stored(stored.code_hash.clone());
            if from_staying
                && one_time_code::check(&hash, stored.expires_at, stored.used_at.is_some(), &code, now).is_ok()
                && self.store.consume_code(user.id, CodePurpose::Verification, hash.as_str(), now).await?
            {
                return Ok(());
            }
        }
        if removing != Some(Method::Totp) && self.spend_totp(user, &code).await? {
            return Ok(());
        }
        Err(self.wrong_code(user, &CodeError::Wrong.message(), ctx).await)
    }

    /// Removes one method after a verification code. Where the company requires 2FA the last
    /// method stays (409); when the last one goes, so do the recovery codes.
    pub async fn remove_method(&self, user: &User, method: Method, code: &str, ctx: &RequestContext) -> Result<(), AppError> {
        let methods = self.user_methods(user.id).await?;
        if !methods.contains(&method) {
            return Err(AppError::new(ErrorKind::NotFound, "method_not_enabled", "This method is not set up for your account."));
        }
        let company = self.company_two_factor(user.company_id).await?;
        if company.available() && company.mode == TwoFactorMode::Required && methods.len() == 1 {
            return Err(AppError::new(
                ErrorKind::Conflict,
                "required_by_company",
                "Your organization requires two-factor authentication: set up another method before removing this one.",
            ));
        }
        self.confirm_change(user, code, Some(method), ctx).await?;
        let mut audit = self.audit("two_factor_removed", Some(user.company_id), Actor::User(user.id), Some(user.id), ctx);
        audit.detail = method.as_str().into();
        let left = self.store.remove_method(user.id, method, &audit).await?;
        if self.store.preferred_method(user.id).await? == Some(method) {
            self.store.set_preferred_method(user.id, None).await?;
        }
        let change = if left == 0 {
            "Two-factor authentication was turned off: its last method and the recovery codes were removed".to_owned()
        } else {
            format!("The {} method was removed from two-factor authentication", method_label(method))
        };
        self.send(templates::security_notice(&user.designated_email, &user.company_name, &user.login_name, "Two-factor authentication method removed", &change, self.now()))
            .await;
        Ok(())
    }

    /// "Get new recovery codes": after a verification code the whole set is replaced.
    pub async fn new_recovery_codes(&self, user: &User, code: &str, ctx: &RequestContext) -> Result<Vec<String>, AppError> {
        if self.user_methods(user.id).await?.is_empty() {
            return Err(AppError::new(ErrorKind::Conflict, "no_two_factor", "Set up a two-factor method first: recovery codes come with it."));
        }
        self.confirm_change(user, code, None, ctx).await?;
        let codes = RecoveryCodes::generate();
        let hashes: Vec<String> = codes.hashes().iter().map(|h| h.as_str().to_owned()).collect();
        let audit = self.audit("recovery_codes_regenerated", Some(user.company_id), Actor::User(user.id), Some(user.id), ctx);
        self.store.replace_recovery_codes(user.id, &hashes, self.now(), &audit).await?;
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
}

fn method_unavailable() -> AppError {
    AppError::new(ErrorKind::Invalid, "method_unavailable", "This method is not enabled for your account.")
}

fn new_method(app: &Latchkey, method: Method) -> StoredMethod {
    StoredMethod {
        method,
        detail: None,
        totp_sealed: None,
        totp_key_id: None,
        totp_last_step: None,
        enabled_at: app.now(),
    }
}
