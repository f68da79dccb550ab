//! Setting up second-factor methods (C6; the Sonar seed's steps 4–8), run on
//! `core::flows::enrolment`: the authenticator app (a sealed pending secret, confirmed by a code
//! and the current password), text message and email codes (confirmed by the code sent), and the
//! designated email's verification that email codes need.
//!
//! A confirmation is one store transaction: the code spent, the method on, the first method's
//! recovery codes, a session restricted to enrolment promoted, the wrong-code count cleared and the
//! audit entry. A request cut off before it commits changes nothing and leaves the code unspent.

use latchkey_core::flows::enrolment::{self, EnrolmentError};
use latchkey_core::flows::UserFacing;
use latchkey_core::seal::Sealed;
use latchkey_core::secret::{Token, TokenHash};
use latchkey_core::two_factor::one_time_code::{Channel, CodeError, CodePurpose};
use latchkey_core::two_factor::recovery::RecoveryCodes;
use latchkey_core::two_factor::totp::{self, TotpSecret};
use latchkey_core::two_factor::{qr, Method, E164};
use latchkey_core::LoginName;
use latchkey_store::{EmailVerification, Enabling, FactorSpend, Proof, StoredMethod, User};

use super::two_factor::method_label;
use super::{Actor, AppError, ErrorKind, Latchkey, RequestContext};
use crate::mail::templates;

/// What the authenticator app needs: the QR code, and the secret for typing in by hand.
pub struct TotpEnrollment {
    pub secret: String,
    pub otpauth_uri: String,
    pub qr_svg: String,
}

/// The session a method is enabled from: one restricted to enrolment becomes a full one in the
/// enrolment's own transaction, which completes the sign-in that required the method.
#[derive(Debug, Clone)]
pub struct EnrollingSession {
    pub hash: TokenHash,
    pub restricted: bool,
}

impl EnrollingSession {
    pub fn of(token: &str, restricted: bool) -> Self {
        Self { hash: Token::from_client(token).hash(), restricted }
    }
}

/// Each of core's enrolment refusals with the kind of answer its place calls for.
pub(super) fn enrolment_error(e: EnrolmentError) -> AppError {
    let kind = match e {
        EnrolmentError::Unavailable | EnrolmentError::NotAllowed => ErrorKind::Forbidden,
        EnrolmentError::NotEnabled => ErrorKind::NotFound,
        EnrolmentError::SetUpFirst => return AppError::field("method", e.message()),
        EnrolmentError::EmailNotVerified
        | EnrolmentError::NoPendingSecret
        | EnrolmentError::RequiredByCompany
        | EnrolmentError::NoTwoFactor
        | EnrolmentError::LockedByCompany => ErrorKind::Conflict,
    };
    AppError::from_flow(kind, &e)
}

pub(super) fn totp_ad(user_id: i64) -> Vec<u8> {
    format!("totp:user:{user_id}").into_bytes()
}

impl Latchkey {
    /// Offered → Pending: 403 unless the company offers 2FA and allows `method`.
    pub(super) async fn require_allowed(&self, user: &User, method: Method) -> Result<(), AppError> {
        let company = self.company_two_factor(user.company_id).await?;
        enrolment::may_enrol(&company, method).map_err(enrolment_error)
    }

    /// Step 4 of the Sonar seed: a new secret and its QR code, pending until a code confirms it.
    pub async fn start_totp_enrollment(&self, user: &User) -> Result<TotpEnrollment, AppError> {
        self.require_allowed(user, Method::Totp).await?;
        let secret = TotpSecret::generate();
        let sealed = self.keyring.seal(secret.as_bytes(), &totp_ad(user.id)).map_err(|_| AppError::internal())?;
        self.store.begin_totp_enrollment(user.id, &sealed.blob, &sealed.key_id, self.now()).await?;
        self.enrollment_of(user, &secret)
    }

    /// The set-up page shows the pending secret while it is fresh, so that a reload or a refused
    /// Save keeps the QR code the app may already have scanned; otherwise a new one.
    pub async fn totp_enrollment_for_page(&self, user: &User) -> Result<TotpEnrollment, AppError> {
        self.require_allowed(user, Method::Totp).await?;
        if let Some((blob, key_id, created_at)) = self.store.totp_enrollment(user.id).await? {
            if enrolment::shows_pending_secret(created_at, self.now()) {
                let secret = self.open_totp(user.id, &blob, &key_id)?;
                return self.enrollment_of(user, &secret);
            }
        }
        self.start_totp_enrollment(user).await
    }

    fn enrollment_of(&self, user: &User, secret: &TotpSecret) -> Result<TotpEnrollment, AppError> {
        let login = LoginName::parse(&user.login_name).map_err(|_| AppError::internal())?;
        let issuer = format!("{} ({})", self.config.two_factor.issuer, user.company_name);
        let otpauth_uri = totp::otpauth_uri(secret, &issuer, &login);
        let qr_svg = qr::svg(&otpauth_uri).map_err(|_| AppError::internal())?;
        Ok(TotpEnrollment { secret: secret.base32(), otpauth_uri, qr_svg })
    }

    pub(super) fn open_totp(&self, user_id: i64, blob: &str, key_id: &str) -> Result<TotpSecret, AppError> {
        let sealed = Sealed { key_id: key_id.to_owned(), blob: blob.to_owned() };
        let bytes = self.keyring.open(&sealed, &totp_ad(user_id)).map_err(|e| {
            tracing::error!(error = %e, user_id, "a TOTP seed could not be opened");
            AppError::internal()
        })?;
        TotpSecret::from_bytes(&bytes).map_err(|_| AppError::internal())
    }

    /// Steps 6–8 of the Sonar seed: the app's code and the current password save the method.
    /// Returns the recovery codes when this is the user's first method (shown once).
    pub async fn confirm_totp(
        &self,
        user: &User,
        session: &EnrollingSession,
        code: &str,
        current_password: &str,
        ctx: &RequestContext,
    ) -> Result<Option<Vec<String>>, AppError> {
        self.require_allowed(user, Method::Totp).await?;
        self.ensure_not_locked(user).await?;
        self.confirm_password(user, current_password).await?;
        let (blob, key_id, _) = self.store.totp_enrollment(user.id).await?.ok_or_else(|| enrolment_error(EnrolmentError::NoPendingSecret))?;
        let secret = self.open_totp(user.id, &blob, &key_id)?;
        let step = match enrolment::confirm_authenticator_app(&secret, code, self.now()) {
            Ok(step) => step,
            Err(refusal) => return Err(self.refused(user, refusal, ctx).await),
        };
        let method = StoredMethod {
            method: Method::Totp,
            detail: None,
            totp_sealed: Some(blob),
            totp_key_id: Some(key_id),
            // The confirming code's step is spent: it cannot sign in right after.
            totp_last_step: Some(step),
            enabled_at: self.now(),
        };
        self.enable(user, session, &method, None, ctx).await
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

    pub async fn confirm_sms(&self, user: &User, session: &EnrollingSession, code: &str, ctx: &RequestContext) -> Result<Option<Vec<String>>, AppError> {
        self.require_allowed(user, Method::Sms).await?;
        let (proof, channel) = self.code_proof(user, CodePurpose::EnrollSms, code, ctx).await?;
        let Some(Channel::Sms(number)) = channel else {
            return Err(AppError::internal());
        };
        let method = StoredMethod { detail: Some(number.as_str().to_owned()), ..self.new_method(Method::Sms) };
        self.enable(user, session, &method, Some(&proof), ctx).await
    }

    /// Email codes go to the designated email, and only once it is verified.
    pub async fn start_email_enrollment(&self, user: &User, ctx: &RequestContext) -> Result<(), AppError> {
        self.require_allowed(user, Method::Email).await?;
        enrolment::email_codes_reach(&user.designated_email, user.designated_email_verified_at.is_some(), None).map_err(enrolment_error)?;
        self.send_code(user, CodePurpose::EnrollEmail, &Channel::Email(user.designated_email.clone()), ctx).await
    }

    pub async fn confirm_email_method(&self, user: &User, session: &EnrollingSession, code: &str, ctx: &RequestContext) -> Result<Option<Vec<String>>, AppError> {
        self.require_allowed(user, Method::Email).await?;
        let (proof, channel) = self.code_proof(user, CodePurpose::EnrollEmail, code, ctx).await?;
        let Some(Channel::Email(address)) = channel else {
            return Err(AppError::internal());
        };
        let verified = user.designated_email_verified_at.is_some();
        enrolment::email_codes_reach(&user.designated_email, verified, Some(&address)).map_err(enrolment_error)?;
        let method = StoredMethod { detail: Some(address), ..self.new_method(Method::Email) };
        self.enable(user, session, &method, Some(&proof), ctx).await
    }

    /// Pending → Enabled: the method, its proof spent, the first method's recovery codes and the
    /// session's promotion in one transaction. Notifies the owner.
    async fn enable(
        &self,
        user: &User,
        session: &EnrollingSession,
        method: &StoredMethod,
        proof: Option<&FactorSpend>,
        ctx: &RequestContext,
    ) -> Result<Option<Vec<String>>, AppError> {
        let codes = RecoveryCodes::generate();
        let hashes: Vec<String> = codes.hashes().iter().map(|h| h.as_str().to_owned()).collect();
        let mut audit = self.audit("two_factor_enrolled", Some(user.company_id), Actor::User(user.id), Some(user.id), ctx);
        audit.detail = method.method.as_str().to_owned();
        let wrong_code_key = self.limits.second_factor_per_user.key(user.id);
        let enabling = Enabling {
            method,
            first_recovery_codes: &hashes,
            proof: proof.map(|factor| Proof { factor, at: self.now() }),
            // Enrolment from a session restricted to it completes the sign-in that required it.
            promote_session: session.restricted.then_some(&session.hash),
            // The right code proved the owner.
            wrong_code_key: Some(&wrong_code_key),
            audit: &audit,
        };
        let Some(first) = self.store.enable_confirmed_method(user.id, &enabling).await? else {
            // A racing request spent the code first: it enabled the method.
            return Err(AppError::from_flow(ErrorKind::Unauthorized, &CodeError::Used));
        };
        self.send(templates::security_notice(
            &user.designated_email,
            &user.company_name,
            &user.login_name,
            "Two-factor authentication method added",
            &format!("The {} method was added to two-factor authentication", method_label(method.method)),
            self.now(),
        ))
        .await;
        // The first method brings recovery codes, shown once.
        Ok(first.then(|| codes.displayed()))
    }

    fn new_method(&self, method: Method) -> StoredMethod {
        StoredMethod { method, detail: None, totp_sealed: None, totp_key_id: None, totp_last_step: None, enabled_at: self.now() }
    }

    /// Sends a code that proves the designated email reaches its owner.
    pub async fn request_email_verification(&self, user: &User, ctx: &RequestContext) -> Result<(), AppError> {
        if user.designated_email_verified_at.is_some() {
            return Err(AppError::new(ErrorKind::Conflict, "email_already_verified", "Your designated email is already verified."));
        }
        self.send_code(user, CodePurpose::VerifyEmail, &Channel::Email(user.designated_email.clone()), ctx).await
    }

    /// The code proves the address it went to, spent with the verification and its audit entry.
    pub async fn confirm_email_verification(&self, user: &User, code: &str, ctx: &RequestContext) -> Result<(), AppError> {
        let (proof, channel) = self.code_proof(user, CodePurpose::VerifyEmail, code, ctx).await?;
        let Some(Channel::Email(address)) = channel else {
            return Err(AppError::internal());
        };
        let mut audit = self.audit("email_verified", Some(user.company_id), Actor::User(user.id), Some(user.id), ctx);
        audit.detail = address.clone();
        let now = self.now();
        match self.store.verify_designated_email(user.id, &address, now, Some(Proof { factor: &proof, at: now }), Some(&audit)).await? {
            EmailVerification::Verified => Ok(()),
            // The office manager changed the designated email after the code was sent.
            EmailVerification::EmailChanged => {
                Err(AppError::new(ErrorKind::Conflict, "email_changed", "Your designated email changed after the code was sent. Send a new code."))
            }
            EmailVerification::ProofSpent => Err(AppError::from_flow(ErrorKind::Unauthorized, &CodeError::Used)),
        }
    }
}
