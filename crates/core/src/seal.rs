//! Secrets that must be read back, kept at rest (TOTP secrets): sealed with XChaCha20-Poly1305 under
//! a key from the configuration, each blob tagged with its key's id so keys can rotate.
//!
//! The associated data names the blob's owner (`b"totp:user:42"`), so a blob copied into another
//! row, or another user's, does not open. A new key becomes `current`; blobs under an old key still
//! open and are sealed again under the current one (`needs_reseal`) until the old key can go.

use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use zeroize::Zeroize;

/// 256-bit keys, the only size XChaCha20-Poly1305 takes.
pub const KEY_LEN: usize = 32;
/// XChaCha's 192-bit nonce is drawn at random for every seal: at that size a repeat under one key
/// never happens in practice, which ChaCha20's 96-bit nonce could not promise for random nonces.
const NONCE_LEN: usize = 24;
/// Poly1305's tag, appended to the ciphertext.
const TAG_LEN: usize = 16;
const MAX_ID_LEN: usize = 64;

/// One key and the id stored beside every blob it sealed.
///
/// In the configuration a key is written `id:base64key`, e.g. `2026-01:` followed by the 32 bytes
/// in base64 (standard or URL-safe alphabet, padding optional; `openssl rand -base64 32` makes
/// one). The id is 1 to 64 characters of letters, digits, `.`, `_` and `-`; a date makes a good id.
#[derive(Clone)]
pub struct SealKey {
    id: String,
    key: [u8; KEY_LEN],
}

/// Why a key from the configuration was refused. Never contains key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealKeyError {
    #[error("a seal key is written id:base64key")]
    MissingColon,
    #[error("a seal key id is 1 to 64 letters, digits, '.', '_' or '-'")]
    BadId,
    #[error("the seal key {id} is not valid base64")]
    NotBase64 { id: String },
    #[error("the seal key {id} is {got} bytes; it must be exactly 32 (256 bits)")]
    WrongLength { id: String, got: usize },
    #[error("two seal keys have the id {0}")]
    DuplicateId(String),
}

impl SealKey {
    pub fn new(id: &str, key: [u8; KEY_LEN]) -> Result<Self, SealKeyError> {
        let ok = !id.is_empty()
            && id.len() <= MAX_ID_LEN
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !ok {
            return Err(SealKeyError::BadId);
        }
        Ok(Self { id: id.to_owned(), key })
    }

    /// A new key from the operating system's generator, for the key-rotation command.
    pub fn generate(id: &str) -> Result<Self, SealKeyError> {
        let mut key = [0u8; KEY_LEN];
        crate::random::fill(&mut key);
        let made = Self::new(id, key);
        key.zeroize();
        made
    }

    /// One key as written in the configuration: `id:base64key`.
    pub fn parse(text: &str) -> Result<Self, SealKeyError> {
        let (id, encoded) = text.trim().split_once(':').ok_or(SealKeyError::MissingColon)?;
        // Accept both alphabets and optional padding: keys get pasted from many tools.
        let encoded: String =
            encoded.trim().trim_end_matches('=').chars().map(|c| match c { '-' => '+', '_' => '/', c => c }).collect();
        let mut bytes = STANDARD_NO_PAD.decode(encoded).map_err(|_| SealKeyError::NotBase64 { id: id.to_owned() })?;
        let key: Result<[u8; KEY_LEN], _> = bytes.as_slice().try_into();
        let got = bytes.len();
        bytes.zeroize();
        let mut key = key.map_err(|_| SealKeyError::WrongLength { id: id.to_owned(), got })?;
        let made = Self::new(id, key);
        key.zeroize();
        made
    }

    /// Several keys separated by commas or whitespace (the old keys, from one setting); an empty
    /// text is no keys.
    pub fn parse_list(text: &str) -> Result<Vec<Self>, SealKeyError> {
        text.split(|c: char| c == ',' || c.is_whitespace()).filter(|s| !s.is_empty()).map(Self::parse).collect()
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The key as written in the configuration, key material included: only for the command that
    /// makes a new key and prints it for the operator.
    pub fn expose_config_text(&self) -> String {
        format!("{}:{}", self.id, base64::engine::general_purpose::STANDARD.encode(self.key))
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&Key::from(self.key))
    }
}

// Keys never print themselves, so a stray `{:?}` of the configuration cannot leak one into a log.
impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealKey").field("id", &self.id).field("key", &"<redacted>").finish()
    }
}

impl Drop for SealKey {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

/// A sealed secret as stored: the id of the key that sealed it, and `nonce ‖ ciphertext ‖ tag` in
/// URL-safe base64 without padding. Neither is secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    pub blob: String,
}

/// Why a sealed secret could not be opened (or sealed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The key it was sealed with is no longer configured: put it back among the old keys.
    #[error("no seal key with id {0} is configured")]
    UnknownKey(String),
    /// Not base64, or too short to hold a nonce and a tag.
    #[error("the sealed blob is malformed")]
    Malformed,
    /// Authentication failed: altered, sealed for another owner (associated data), or under a
    /// different key with the same id. Told apart from nothing else, on purpose.
    #[error("the sealed blob does not open")]
    DoesNotOpen,
    /// Beyond what the cipher can seal in one message (hundreds of gigabytes): never a TOTP secret.
    #[error("too large to seal")]
    TooLarge,
}

/// The configured keys: `current` seals, every key opens what it sealed.
#[derive(Debug, Clone)]
pub struct Keyring {
    current: SealKey,
    old: Vec<SealKey>,
}

impl Keyring {
    /// Refuses two keys with one id: a blob's id must name exactly one key.
    pub fn new(current: SealKey, old: Vec<SealKey>) -> Result<Self, SealKeyError> {
        let mut ids = vec![current.id()];
        for key in &old {
            if ids.contains(&key.id()) {
                return Err(SealKeyError::DuplicateId(key.id.clone()));
            }
            ids.push(key.id());
        }
        Ok(Self { current, old })
    }

    /// From the configuration: the current key (`id:base64key`) and the old ones (a list as in
    /// [`SealKey::parse_list`], empty when there are none).
    pub fn from_config(current: &str, old: &str) -> Result<Self, SealKeyError> {
        Self::new(SealKey::parse(current)?, SealKey::parse_list(old)?)
    }

    pub fn current_id(&self) -> &str {
        self.current.id()
    }

    /// Seals `plaintext` under the current key, bound to `associated_data` (the owner, e.g.
    /// `b"totp:user:42"`), which must be given again, the same, to open it.
    pub fn seal(&self, plaintext: &[u8], associated_data: &[u8]) -> Result<Sealed, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        crate::random::fill(&mut nonce);
        let ciphertext = self
            .current
            .cipher()
            .encrypt(&XNonce::from(nonce), Payload { msg: plaintext, aad: associated_data })
            .map_err(|_| SealError::TooLarge)?;
        let mut blob = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&ciphertext);
        Ok(Sealed { key_id: self.current.id.clone(), blob: URL_SAFE_NO_PAD.encode(blob) })
    }

    /// Opens a blob with the key its id names, checking it was sealed for `associated_data`.
    pub fn open(&self, sealed: &Sealed, associated_data: &[u8]) -> Result<Vec<u8>, SealError> {
        let key = self.key(&sealed.key_id).ok_or_else(|| SealError::UnknownKey(sealed.key_id.clone()))?;
        let bytes = URL_SAFE_NO_PAD.decode(&sealed.blob).map_err(|_| SealError::Malformed)?;
        if bytes.len() < NONCE_LEN + TAG_LEN {
            return Err(SealError::Malformed);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| SealError::Malformed)?;
        key.cipher()
            .decrypt(&XNonce::from(nonce), Payload { msg: ciphertext, aad: associated_data })
            .map_err(|_| SealError::DoesNotOpen)
    }

    /// True when the blob was sealed under a key other than the current one: open it and seal it
    /// again, in the same transaction that read it, so the old key can be retired.
    pub fn needs_reseal(&self, sealed: &Sealed) -> bool {
        sealed.key_id != self.current.id
    }

    fn key(&self, id: &str) -> Option<&SealKey> {
        std::iter::once(&self.current).chain(&self.old).find(|k| k.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, fill: u8) -> SealKey {
        SealKey::new(id, [fill; KEY_LEN]).unwrap()
    }

    fn ring(current: SealKey, old: Vec<SealKey>) -> Keyring {
        Keyring::new(current, old).unwrap()
    }

    #[test]
    fn round_trip() {
        let ring = ring(key("k1", 1), vec![]);
        let secret = b"12345678901234567890";
        let sealed = ring.seal(secret, b"totp:user:42").unwrap();
        assert_eq!(sealed.key_id, "k1");
        assert_eq!(ring.open(&sealed, b"totp:user:42").unwrap(), secret);
        assert!(!ring.needs_reseal(&sealed));
        // A fresh nonce each time: the same secret never seals to the same blob.
        assert_ne!(ring.seal(secret, b"totp:user:42").unwrap().blob, sealed.blob);
        assert!(!sealed.blob.contains(['+', '/', '=']));
        assert_eq!(URL_SAFE_NO_PAD.decode(&sealed.blob).unwrap().len(), NONCE_LEN + secret.len() + TAG_LEN);
        assert_eq!(ring.open(&ring.seal(b"", b"").unwrap(), b"").unwrap(), b"");
    }

    #[test]
    fn a_blob_opens_only_for_its_owner() {
        let ring = ring(key("k1", 1), vec![]);
        let sealed = ring.seal(b"secret", b"totp:user:42").unwrap();
        assert_eq!(ring.open(&sealed, b"totp:user:43"), Err(SealError::DoesNotOpen));
        assert_eq!(ring.open(&sealed, b""), Err(SealError::DoesNotOpen));
    }

    #[test]
    fn a_tampered_blob_does_not_open() {
        let ring = ring(key("k1", 1), vec![]);
        let sealed = ring.seal(b"secret", b"ad").unwrap();
        let bytes = URL_SAFE_NO_PAD.decode(&sealed.blob).unwrap();
        for i in [0, NONCE_LEN, bytes.len() - 1] {
            let mut altered = bytes.clone();
            altered[i] ^= 0x01;
            let altered = Sealed { key_id: "k1".into(), blob: URL_SAFE_NO_PAD.encode(altered) };
            assert_eq!(ring.open(&altered, b"ad"), Err(SealError::DoesNotOpen), "byte {i}");
        }
        let truncated = Sealed { key_id: "k1".into(), blob: URL_SAFE_NO_PAD.encode(&bytes[..NONCE_LEN + TAG_LEN - 1]) };
        assert_eq!(ring.open(&truncated, b"ad"), Err(SealError::Malformed));
        let shortened = Sealed { key_id: "k1".into(), blob: URL_SAFE_NO_PAD.encode(&bytes[..bytes.len() - 1]) };
        assert_eq!(ring.open(&shortened, b"ad"), Err(SealError::DoesNotOpen));
        let not_base64 = Sealed { key_id: "k1".into(), blob: "not base64!".into() };
        assert_eq!(ring.open(&not_base64, b"ad"), Err(SealError::Malformed));
    }

    #[test]
    fn rotation_keeps_old_blobs_readable_until_resealed() {
        let before = ring(key("2025-01", 1), vec![]);
        let sealed = before.seal(b"secret", b"totp:user:42").unwrap();
        let after = ring(key("2026-01", 2), vec![key("2025-01", 1)]);
        assert_eq!(after.current_id(), "2026-01");
        assert!(after.needs_reseal(&sealed));
        assert_eq!(after.open(&sealed, b"totp:user:42").unwrap(), b"secret");
        let resealed = after.seal(&after.open(&sealed, b"totp:user:42").unwrap(), b"totp:user:42").unwrap();
        assert!(!after.needs_reseal(&resealed));
        assert_eq!(resealed.key_id, "2026-01");
        // Once the old key is removed from the configuration, what it sealed says which key is missing.
        let retired = ring(key("2026-01", 2), vec![]);
        assert_eq!(retired.open(&sealed, b"totp:user:42"), Err(SealError::UnknownKey("2025-01".into())));
        // A blob relabelled with another configured key's id does not open under it.
        let relabelled = Sealed { key_id: "2026-01".into(), ..sealed };
        assert_eq!(after.open(&relabelled, b"totp:user:42"), Err(SealError::DoesNotOpen));
    }

    #[test]
    fn keys_from_the_configuration() {
        let std_b64 = base64::engine::general_purpose::STANDARD.encode([7u8; KEY_LEN]);
        let k = SealKey::parse(&format!("2026-01:{std_b64}")).unwrap();
        assert_eq!(k.id(), "2026-01");
        assert_eq!(k.key, [7u8; KEY_LEN]);
        assert_eq!(SealKey::parse(&k.expose_config_text()).unwrap().key, k.key);
        let url_b64 = URL_SAFE_NO_PAD.encode([0xfbu8; KEY_LEN]);
        assert!(url_b64.contains(['-', '_']));
        assert_eq!(SealKey::parse(&format!(" k2:{url_b64}\n")).unwrap().key, [0xfb; KEY_LEN]);

        let short = base64::engine::general_purpose::STANDARD.encode([7u8; 16]);
        assert_eq!(SealKey::parse(&format!("k:{short}")).unwrap_err(), SealKeyError::WrongLength { id: "k".into(), got: 16 });
        let long = base64::engine::general_purpose::STANDARD.encode([7u8; 33]);
        assert_eq!(SealKey::parse(&format!("k:{long}")).unwrap_err(), SealKeyError::WrongLength { id: "k".into(), got: 33 });
        assert_eq!(SealKey::parse(&std_b64).unwrap_err(), SealKeyError::MissingColon);
        assert_eq!(SealKey::parse("k:***").unwrap_err(), SealKeyError::NotBase64 { id: "k".into() });
        assert_eq!(SealKey::parse(&format!(":{std_b64}")).unwrap_err(), SealKeyError::BadId);
        assert_eq!(SealKey::parse(&format!("a b:{std_b64}")).unwrap_err(), SealKeyError::BadId);
        assert_eq!(SealKey::parse(&format!("{}:{std_b64}", "x".repeat(65))).unwrap_err(), SealKeyError::BadId);
        assert_eq!(SealKey::parse("no-colon").unwrap_err(), SealKeyError::MissingColon);

        assert!(SealKey::parse_list("").unwrap().is_empty());
        let list = SealKey::parse_list(&format!("a:{std_b64}, b:{url_b64}\n")).unwrap();
        assert_eq!(list.iter().map(SealKey::id).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(
            Keyring::from_config(&format!("a:{std_b64}"), &format!("a:{url_b64}")).unwrap_err(),
            SealKeyError::DuplicateId("a".into())
        );
        let ring = Keyring::from_config(&format!("b:{std_b64}"), &format!("a:{url_b64}")).unwrap();
        assert_eq!(ring.current_id(), "b");
    }

    #[test]
    fn keys_do_not_print_themselves() {
        let k = SealKey::generate("k1").unwrap();
        let encoded = base64::engine::general_purpose::STANDARD.encode(k.key);
        let shown = format!("{k:?} {:?}", Keyring::new(k.clone(), vec![]).unwrap());
        assert!(shown.contains("k1") && shown.contains("<redacted>"), "{shown}");
        assert!(!shown.contains(&encoded[..8]));
        assert_ne!(SealKey::generate("k1").unwrap().key, k.key);
        // Errors name the key, never its material.
        let err = SealKey::parse(&format!("k:{}", &encoded[..20])).unwrap_err().to_string();
        assert!(!err.contains(&encoded[..8]), "{err}");
    }
}
