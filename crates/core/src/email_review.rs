//! The email association review (C7): the seed's "SSO Security Considerations" and "Security
//! Recommendations" as findings an office manager can act on, each with its fix. Rows in, findings out.
//!
//! Only a *verified* email can sign in by SSO (the designated email once its welcome or reset link
//! was used, an additional email once its confirmation link was). An unverified address is still
//! worth a finding where several accounts share it: the day it is verified it signs in to each.

use std::collections::BTreeMap;

use crate::account::Role;

/// Where an address sits on an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EmailSlot {
    Designated,
    /// Added by the office manager, e.g. for voicemail notifications.
    Additional,
}

/// One email of one account of the company, as the store reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountEmail {
    pub login_name: String,
    pub extension: String,
    pub role: Role,
    /// As entered.
    pub email: String,
    /// The form addresses are compared in (`Email::key`).
    pub email_key: String,
    pub slot: EmailSlot,
    pub verified: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FindingKind {
    /// "Beware of Group Email Addresses": one address on several accounts.
    SharedEmail,
    /// "Beware of Multiple Email Addresses on One Account": several addresses sign in to one.
    SeveralSsoEmails,
    /// An additional (voicemail) email that signs in, e.g. an assistant's.
    AdditionalEmailCanSignIn,
}

impl FindingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::SharedEmail => "shared_email",
            FindingKind::SeveralSsoEmails => "several_sso_emails",
            FindingKind::AdditionalEmailCanSignIn => "additional_email_can_sign_in",
        }
    }

    /// The seed's recommendation for this finding, in words for the office manager.
    pub fn fix(self) -> &'static str {
        match self {
            FindingKind::SharedEmail => {
                "Give each person their own email address. To share voicemail notifications, create a distribution group \
                 in Google Workspace or Microsoft 365 instead: anyone who can read a shared address can sign in to every \
                 account it is confirmed on."
            }
            FindingKind::SeveralSsoEmails => {
                "Keep one email that signs in. Remove additional emails that are only there for voicemail notifications \
                 and send voicemail to a distribution group instead."
            }
            FindingKind::AdditionalEmailCanSignIn => {
                "If this address is only for voicemail notifications (for example an assistant receiving a manager's \
                 voicemail), remove it and use a distribution group: with single sign-on on, it signs in to the account."
            }
        }
    }
}

/// An account a finding is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvolvedAccount {
    pub login_name: String,
    pub extension: String,
    pub role: Role,
    /// The finding's email is verified on this account, so it signs in to it by SSO.
    pub can_sign_in: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub kind: FindingKind,
    /// The address concerned; for `SeveralSsoEmails`, every address that signs in to the account.
    pub emails: Vec<String>,
    /// By login name.
    pub accounts: Vec<InvolvedAccount>,
    /// Whether the email signs in to any of the accounts by SSO today.
    pub can_sign_in: bool,
}

/// Every finding, shared emails first, then accounts with several SSO emails, then additional
/// emails that sign in; within a kind by address. The same rows give the same findings.
pub fn review(rows: &[AccountEmail]) -> Vec<Finding> {
    let mut findings = shared_emails(rows);
    findings.extend(several_sso_emails(rows));
    findings.extend(additional_emails_that_sign_in(rows));
    findings
}

fn shared_emails(rows: &[AccountEmail]) -> Vec<Finding> {
    by_email(rows.iter())
        .into_values()
        .filter_map(|group| {
            let accounts = involved(&group);
            (accounts.len() > 1).then(|| finding(FindingKind::SharedEmail, vec![group[0].email.clone()], accounts))
        })
        .collect()
}

fn several_sso_emails(rows: &[AccountEmail]) -> Vec<Finding> {
    let mut per_account: BTreeMap<&str, BTreeMap<&str, &AccountEmail>> = BTreeMap::new();
    for row in rows.iter().filter(|r| r.verified) {
        per_account.entry(&row.login_name).or_default().entry(&row.email_key).or_insert(row);
    }
    let mut findings: Vec<Finding> = per_account
        .into_values()
        .filter(|emails| emails.len() > 1)
        .map(|emails| {
            let group: Vec<&AccountEmail> = emails.into_values().collect();
            finding(FindingKind::SeveralSsoEmails, group.iter().map(|r| r.email.clone()).collect(), involved(&group))
        })
        .collect();
    findings.sort_by(|a, b| a.emails.cmp(&b.emails));
    findings
}

fn additional_emails_that_sign_in(rows: &[AccountEmail]) -> Vec<Finding> {
    let signing_in = rows.iter().filter(|r| r.slot == EmailSlot::Additional && r.verified);
    by_email(signing_in)
        .into_values()
        .map(|group| finding(FindingKind::AdditionalEmailCanSignIn, vec![group[0].email.clone()], involved(&group)))
        .collect()
}

fn finding(kind: FindingKind, emails: Vec<String>, accounts: Vec<InvolvedAccount>) -> Finding {
    let can_sign_in = accounts.iter().any(|a| a.can_sign_in);
    Finding { kind, emails, accounts, can_sign_in }
}

/// Rows by email key, each group in login-name order so the address shown is always the same one.
fn by_email<'a>(rows: impl Iterator<Item = &'a AccountEmail>) -> BTreeMap<&'a str, Vec<&'a AccountEmail>> {
    let mut groups: BTreeMap<&str, Vec<&AccountEmail>> = BTreeMap::new();
    for row in rows {
        groups.entry(&row.email_key).or_default().push(row);
    }
    for group in groups.values_mut() {
        group.sort_by(|a, b| (&a.login_name, a.slot).cmp(&(&b.login_name, b.slot)));
    }
    groups
}

/// The distinct accounts of some rows; an account signs in when any of its rows is verified.
fn involved(rows: &[&AccountEmail]) -> Vec<InvolvedAccount> {
    let mut accounts: BTreeMap<&str, InvolvedAccount> = BTreeMap::new();
    for row in rows {
        let account = accounts.entry(&row.login_name).or_insert_with(|| InvolvedAccount {
            login_name: row.login_name.clone(),
            extension: row.extension.clone(),
            role: row.role,
            can_sign_in: false,
        });
        account.can_sign_in |= row.verified;
    }
    accounts.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn row(ext: &str, email: &str, slot: EmailSlot, verified: bool) -> AccountEmail {
        AccountEmail {
            login_name: format!("{ext}@organization.com"),
            extension: ext.to_owned(),
            role: Role::User,
            email: email.to_owned(),
            email_key: email.to_lowercase(),
            slot,
            verified,
        }
    }

    fn account(ext: &str, can_sign_in: bool) -> InvolvedAccount {
        InvolvedAccount { login_name: format!("{ext}@organization.com"), extension: ext.to_owned(), role: Role::User, can_sign_in }
    }

    use EmailSlot::{Additional, Designated};

    #[test]
    fn one_own_verified_address_per_account_has_no_finding() {
        let rows = [row("101", "ann@example.com", Designated, true), row("102", "bob@example.com", Designated, false)];
        assert_eq!(review(&rows), vec![]);
    }

    #[test]
    fn a_shared_address_is_one_finding_whatever_its_case_and_says_where_it_signs_in() {
        let rows = [
            row("102", "front@example.com", Designated, false),
            row("101", "Front@Example.com", Designated, true),
            row("103", "FRONT@example.com", Additional, false),
        ];
        let found = review(&rows);
        assert_eq!(
            found,
            vec![Finding {
                kind: FindingKind::SharedEmail,
                emails: vec!["Front@Example.com".into()],
                accounts: vec![account("101", true), account("102", false), account("103", false)],
                can_sign_in: true,
            }]
        );
        let unverified = review(&rows[..1].iter().chain(&rows[2..]).cloned().collect::<Vec<_>>());
        assert_eq!((unverified[0].kind, unverified[0].can_sign_in), (FindingKind::SharedEmail, false), "shared but signs in nowhere yet");
    }

    #[test]
    fn the_same_address_twice_on_one_account_is_not_shared() {
        let rows = [row("101", "ann@example.com", Designated, true), row("101", "ANN@example.com", Additional, true)];
        let kinds: Vec<FindingKind> = review(&rows).iter().map(|f| f.kind).collect();
        assert_eq!(kinds, vec![FindingKind::AdditionalEmailCanSignIn], "one address, so not several SSO emails either");
    }

    #[test]
    fn several_verified_addresses_on_one_account_and_the_additional_one_are_findings() {
        let rows = [
            row("101", "boss@example.com", Designated, true),
            row("101", "assistant@example.com", Additional, true),
            row("101", "pending@example.com", Additional, false),
        ];
        assert_eq!(
            review(&rows),
            vec![
                Finding {
                    kind: FindingKind::SeveralSsoEmails,
                    emails: vec!["assistant@example.com".into(), "boss@example.com".into()],
                    accounts: vec![account("101", true)],
                    can_sign_in: true,
                },
                Finding {
                    kind: FindingKind::AdditionalEmailCanSignIn,
                    emails: vec!["assistant@example.com".into()],
                    accounts: vec![account("101", true)],
                    can_sign_in: true,
                },
            ]
        );
    }

    #[test]
    fn an_unverified_designated_email_does_not_make_several() {
        let rows = [row("101", "boss@example.com", Designated, false), row("101", "assistant@example.com", Additional, true)];
        let kinds: Vec<FindingKind> = review(&rows).iter().map(|f| f.kind).collect();
        assert_eq!(kinds, vec![FindingKind::AdditionalEmailCanSignIn]);
    }

    #[test]
    fn every_kind_has_a_name_and_a_fix() {
        for kind in [FindingKind::SharedEmail, FindingKind::SeveralSsoEmails, FindingKind::AdditionalEmailCanSignIn] {
            assert!(kind.fix().contains("distribution group"), "{kind:?}");
        }
        assert_eq!(FindingKind::AdditionalEmailCanSignIn.as_str(), "additional_email_can_sign_in");
    }

    fn any_row() -> impl Strategy<Value = AccountEmail> {
        (1..5u8, 0..4u8, any::<bool>(), any::<bool>()).prop_map(|(ext, mail, additional, verified)| {
            let slot = if additional { Additional } else { Designated };
            row(&ext.to_string(), &format!("m{mail}@example.com"), slot, verified)
        })
    }

    proptest! {
        #[test]
        fn findings_do_not_depend_on_row_order(mut rows in prop::collection::vec(any_row(), 0..12)) {
            let before = review(&rows);
            rows.reverse();
            prop_assert_eq!(review(&rows), before);
        }

        #[test]
        fn a_finding_that_signs_in_names_a_verified_row(rows in prop::collection::vec(any_row(), 0..12)) {
            for f in review(&rows) {
                for a in f.accounts.iter().filter(|a| a.can_sign_in) {
                    prop_assert!(rows.iter().any(|r| r.login_name == a.login_name && r.verified && f.emails.iter().any(|e| e.to_lowercase() == r.email_key)));
                }
            }
        }
    }
}
