//! The one random source: every secret, token, code, nonce, salt and message id is drawn here, from
//! the operating system's CSPRNG. A test can make its own thread's draws reproducible.
//!
//! Why seeding cannot weaken production: the seeded generator and the function that installs it
//! exist only in this crate's own tests and in builds with the `seeded-random` feature, which only
//! other crates' dev-dependencies turn on (a release build of the binary never has it). Even then a
//! draw is seeded only on a thread that called [`seed_this_thread`] itself; every other draw, and
//! every draw in a build without the feature, goes to [`OsRng`]. There is no fallback: if the OS
//! generator fails, `OsRng` panics rather than return something guessable.

use rand::rngs::OsRng;
use rand::{CryptoRng, Rng, RngCore};

/// Fills `bytes` from the source.
pub fn fill(bytes: &mut [u8]) {
    Source.fill_bytes(bytes);
}

/// A number in `0..end`, every value equally likely (`gen_range` samples by rejection, so there is
/// no modulo bias towards low values).
pub fn below(end: u32) -> u32 {
    Source.gen_range(0..end)
}

/// The source as a generator, for libraries that take one (password salts).
#[derive(Debug, Default, Clone, Copy)]
pub struct Source;

impl RngCore for Source {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }

    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        #[cfg(any(test, feature = "seeded-random"))]
        if seeded::fill(dest) {
            return;
        }
        OsRng.fill_bytes(dest);
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

// Production draws are OsRng's; seeded draws (tests only) are ChaCha's, itself a CSPRNG.
impl CryptoRng for Source {}

#[cfg(any(test, feature = "seeded-random"))]
pub use seeded::{seed_this_thread, Seeded};

#[cfg(any(test, feature = "seeded-random"))]
mod seeded {
    use std::cell::RefCell;

    use rand::rngs::StdRng;
    use rand::{RngCore, SeedableRng};

    thread_local! {
        static SEEDED: RefCell<Option<StdRng>> = const { RefCell::new(None) };
    }

    /// While the returned guard lives, this thread's draws come from a generator seeded with `seed`:
    /// the same seed gives the same tokens and codes. Other threads are not affected. Dropping the
    /// guard puts back what was there before.
    #[must_use = "the seeding ends when the guard is dropped"]
    pub fn seed_this_thread(seed: u64) -> Seeded {
        let previous = SEEDED.with(|s| s.borrow_mut().replace(StdRng::seed_from_u64(seed)));
        Seeded { previous }
    }

    /// Ends this thread's seeding when dropped.
    pub struct Seeded {
        previous: Option<StdRng>,
    }

    impl Drop for Seeded {
        fn drop(&mut self) {
            let previous = self.previous.take();
            SEEDED.with(|s| *s.borrow_mut() = previous);
        }
    }

    /// Draws from this thread's seeded generator if it has one.
    pub(super) fn fill(dest: &mut [u8]) -> bool {
        SEEDED.with(|s| match s.borrow_mut().as_mut() {
            Some(rng) => {
                rng.fill_bytes(dest);
                true
            }
            None => false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Token;
    use crate::two_factor::one_time_code::OneTimeCode;
    use crate::two_factor::recovery::RecoveryCodes;
    use crate::two_factor::totp::TotpSecret;

    fn draws() -> (String, String, Vec<String>, Vec<u8>) {
        let token = Token::generate().expose().to_owned();
        let code = OneTimeCode::generate().expose().to_owned();
        let recovery = RecoveryCodes::generate().displayed();
        let totp = TotpSecret::generate().as_bytes().to_vec();
        (token, code, recovery, totp)
    }

    #[test]
    fn the_same_seed_gives_the_same_tokens_and_codes() {
        let first = {
            let _seeded = seed_this_thread(17);
            draws()
        };
        let second = {
            let _seeded = seed_this_thread(17);
            draws()
        };
        assert_eq!(first, second);
        let other = {
            let _seeded = seed_this_thread(18);
            draws()
        };
        assert_ne!(first.0, other.0);
    }

    #[test]
    fn without_a_seed_two_draws_differ() {
        let (a, b) = (Token::generate(), Token::generate());
        assert_ne!(a.expose(), b.expose());
        let (mut x, mut y) = ([0u8; 32], [0u8; 32]);
        fill(&mut x);
        fill(&mut y);
        assert_ne!(x, y);
    }

    #[test]
    fn seeding_ends_with_the_guard_and_stays_on_its_thread() {
        let seeded_token = {
            let _seeded = seed_this_thread(5);
            let elsewhere = std::thread::spawn(|| Token::generate().expose().to_owned()).join().unwrap();
            let mine = Token::generate().expose().to_owned();
            let _again = seed_this_thread(5);
            assert_eq!(Token::generate().expose(), mine, "the same seed again");
            assert_ne!(elsewhere, mine, "another thread draws from the OS");
            mine
        };
        assert_ne!(Token::generate().expose(), seeded_token, "after the guard, the OS again");
    }

    #[test]
    fn below_stays_in_range() {
        assert!((0..1000).all(|_| below(10) < 10));
    }
}
