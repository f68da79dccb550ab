//! Single sign-on (C7): what a provider's answer leads to.
//!
//! ```text
//!   Start ──(state, nonce, PKCE; bound to the browser)──▶ Provider ──callback──▶ resolve:
//!     a stored link (provider + subject)          ─┐
//!     else a trusted provider email equal to a     ├─ one account  ──▶ SignIn (then the company's 2FA rule)
//!          verified email of an account           ─┘   several      ──▶ Choose (remembered choice pre-selected)
//!     else                                                           ──▶ Link (login name + password once)
//! ```
//!
//! Whether the provider's email can be trusted is the provider's business, and each answers it
//! differently: Google says so in `email_verified`; Microsoft does not verify the `email` claim at
//! all (the "nOAuth" takeover class), so it counts only where `xms_edov` says the domain is verified
//! for the tenant, or the operator marked the tenant as trusted. Local emails count only when
//! verified, and only accounts of companies that enabled that provider are candidates at all.

/// The providers Latchkey signs in with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Provider {
    Google,
    Microsoft,
}

impl Provider {
    pub const ALL: [Provider; 2] = [Provider::Google, Provider::Microsoft];

    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Google => "google",
            Provider::Microsoft => "microsoft",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "google" => Some(Provider::Google),
            "microsoft" => Some(Provider::Microsoft),
            _ => None,
        }
    }

    /// The name on the sign-in button and in Account Security.
    pub fn label(self) -> &'static str {
        match self {
            Provider::Google => "Google",
            Provider::Microsoft => "Office 365",
        }
    }
}

/// What a checked ID token says about the person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderIdentity {
    pub provider: Provider,
    /// `sub`: the provider's stable id for the person (for Microsoft, per tenant and app).
    pub subject: String,
    pub email: Option<String>,
    /// Google's `email_verified`.
    pub email_verified: Option<bool>,
    /// Microsoft's `tid`.
    pub tenant: Option<String>,
    /// Microsoft's `xms_edov`: the email's domain is verified for the tenant.
    pub email_domain_verified: Option<bool>,
}

impl ProviderIdentity {
    /// The provider email, lower-cased, when it may be matched against an account's verified
    /// email; `None` sends the person to linking.
    pub fn trusted_email(&self, trusted_tenants: &[String]) -> Option<String> {
        let email = self.email.as_deref().map(str::trim).filter(|e| e.contains('@'))?.to_lowercase();
        let trusted = match self.provider {
            Provider::Google => self.email_verified == Some(true),
            Provider::Microsoft => {
                self.email_domain_verified == Some(true) || self.tenant.as_ref().is_some_and(|t| trusted_tenants.iter().any(|x| x.eq_ignore_ascii_case(t)))
            }
        };
        trusted.then_some(email)
    }
}

/// An account the identity may sign in to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub user_id: i64,
    pub login_name: String,
    pub company_name: String,
}

/// Where the callback goes next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SsoOutcome {
    /// Exactly one account: sign in to it (the company's 2FA rule still applies).
    SignIn { user_id: i64 },
    /// Several accounts: the account chooser, with the remembered one pre-selected.
    Choose { candidates: Vec<Candidate>, preselected: Option<i64> },
    /// No account: ask once for the login name and password to link it.
    Link,
}

/// Decides the next step. `linked` are the accounts holding a stored link for the identity;
/// `matched` the accounts whose verified email equals the trusted provider email (both already
/// limited to companies that enabled the provider, and to active accounts). A stored link wins
/// over an email match; `remembered` is the identity's last choice.
pub fn resolve(linked: Vec<Candidate>, matched: Vec<Candidate>, remembered: Option<i64>) -> SsoOutcome {
    let mut candidates = if linked.is_empty() { matched } else { linked };
    candidates.sort_by(|a, b| a.login_name.cmp(&b.login_name));
    candidates.dedup_by_key(|c| c.user_id);
    match candidates.len() {
        0 => SsoOutcome::Link,
        1 => SsoOutcome::SignIn { user_id: candidates[0].user_id },
        _ => {
            let preselected = remembered.filter(|r| candidates.iter().any(|c| c.user_id == *r));
            SsoOutcome::Choose { candidates, preselected }
        }
    }
}

/// Whether a choice made on the account chooser is one it offered: anything else is refused, so a
/// tampered form cannot pick an account the identity has no claim to.
pub fn choice_allowed(outcome: &SsoOutcome, user_id: i64) -> bool {
    match outcome {
        SsoOutcome::SignIn { user_id: only } => *only == user_id,
        SsoOutcome::Choose { candidates, .. } => candidates.iter().any(|c| c.user_id == user_id),
        SsoOutcome::Link => false,
    }
}

/// Microsoft's multi-tenant endpoints publish an issuer template
/// (`https://login.microsoftonline.com/{tenantid}/v2.0`); a token's `iss` must be that template with
/// the token's own `tid` put in. A fixed issuer (Google, a single tenant) must match exactly.
pub fn issuer_matches(discovered: &str, token_issuer: &str, tenant: Option<&str>) -> bool {
    if discovered.contains("{tenantid}") {
        match tenant {
            Some(tid) if !tid.is_empty() && tid.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') => {
                discovered.replace("{tenantid}", tid) == token_issuer
            }
            _ => false,
        }
    } else {
        discovered == token_issuer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(provider: Provider) -> ProviderIdentity {
        ProviderIdentity {
            provider,
            subject: "s".into(),
            email: Some("Alice@Example.com".into()),
            email_verified: None,
            tenant: None,
            email_domain_verified: None,
        }
    }

    fn cand(id: i64, login: &str) -> Candidate {
        Candidate { user_id: id, login_name: login.into(), company_name: "Org".into() }
    }

    #[test]
    fn google_email_counts_only_when_verified() {
        let mut g = id(Provider::Google);
        assert_eq!(g.trusted_email(&[]), None);
        g.email_verified = Some(false);
        assert_eq!(g.trusted_email(&[]), None);
        g.email_verified = Some(true);
        assert_eq!(g.trusted_email(&[]).as_deref(), Some("alice@example.com"));
        g.email = None;
        assert_eq!(g.trusted_email(&[]), None);
    }

    #[test]
    fn microsoft_email_counts_only_with_a_verified_domain_or_a_trusted_tenant() {
        let mut m = id(Provider::Microsoft);
        m.email_verified = Some(true); // Google's claim means nothing from Microsoft
        m.tenant = Some("tenant-a".into());
        assert_eq!(m.trusted_email(&[]), None, "nOAuth: an unverified Microsoft email is never matched");
        assert_eq!(m.trusted_email(&["TENANT-A".into()]).as_deref(), Some("alice@example.com"));
        assert_eq!(m.trusted_email(&["tenant-b".into()]), None);
        m.email_domain_verified = Some(true);
        assert_eq!(m.trusted_email(&[]).as_deref(), Some("alice@example.com"));
    }

    #[test]
    fn a_stored_link_wins_over_an_email_match() {
        assert_eq!(resolve(vec![cand(1, "101@a.com")], vec![cand(2, "102@a.com")], None), SsoOutcome::SignIn { user_id: 1 });
        assert_eq!(resolve(vec![], vec![cand(2, "102@a.com")], None), SsoOutcome::SignIn { user_id: 2 });
        assert_eq!(resolve(vec![], vec![], Some(3)), SsoOutcome::Link);
    }

    #[test]
    fn several_accounts_go_to_the_chooser_with_the_remembered_one_preselected() {
        let out = resolve(vec![], vec![cand(2, "102@b.com"), cand(1, "101@a.com"), cand(2, "102@b.com")], Some(2));
        let SsoOutcome::Choose { candidates, preselected } = &out else { panic!("{out:?}") };
        assert_eq!(candidates.iter().map(|c| c.user_id).collect::<Vec<_>>(), vec![1, 2], "sorted, no duplicates");
        assert_eq!(*preselected, Some(2));
        assert!(choice_allowed(&out, 1) && !choice_allowed(&out, 9));
        let stale = resolve(vec![], vec![cand(1, "101@a.com"), cand(2, "102@b.com")], Some(9));
        assert!(matches!(stale, SsoOutcome::Choose { preselected: None, .. }), "a remembered account no longer offered is not pre-selected");
        assert!(!choice_allowed(&SsoOutcome::Link, 1));
    }

    #[test]
    fn the_tenant_issuer_template_takes_the_tokens_own_tenant() {
        let t = "https://login.microsoftonline.com/{tenantid}/v2.0";
        assert!(issuer_matches(t, "https://login.microsoftonline.com/abc-123/v2.0", Some("abc-123")));
        assert!(!issuer_matches(t, "https://login.microsoftonline.com/abc-123/v2.0", Some("other")), "iss and tid must agree");
        assert!(!issuer_matches(t, "https://login.microsoftonline.com/abc-123/v2.0", None));
        assert!(!issuer_matches(t, "https://evil.example/x/v2.0", Some("x")));
        assert!(!issuer_matches(t, "https://login.microsoftonline.com/a/b/v2.0", Some("a/b")), "a tenant id is one path segment");
        assert!(issuer_matches("https://accounts.google.com", "https://accounts.google.com", None));
        assert!(!issuer_matches("https://accounts.google.com", "https://accounts.google.com/", None));
    }
}
