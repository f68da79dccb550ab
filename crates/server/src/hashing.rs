//! Argon2id hashing of passwords and PINs on a bounded pool: about one hash per core at a time, a
//! bounded queue behind it, and a fast "busy" beyond that. A sign-in flood can then neither exhaust
//! memory (each hash holds 19 MiB) nor starve the runtime threads that serve everything else.
//!
//! Each hash allocates and frees its 19 MiB. glibc serves a large allocation with its own mapping
//! and unmaps it when freed, but after the first such free it raises its threshold to that size,
//! so later hashes come from the heap and their memory is kept: the benchmark saw 388 MB resident
//! after a few hundred sign-ins. [`Hasher::new`] fixes the threshold, which also switches the
//! raising off; the hashes then run on the pool's own threads, so their number is bounded too.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

use crate::config::Argon2Config;

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// The pool and its queue are full: answer 503 with Retry-After.
    #[error("hashing pool busy")]
    Busy,
    #[error("hashing failed: {0}")]
    Failed(String),
}

#[derive(Clone)]
pub struct Hasher {
    inner: Arc<Inner>,
}

/// One hash to run on a pool thread; it sends its own result back.
type Job = Box<dyn FnOnce(&Argon2<'static>) + Send>;

struct Inner {
    /// To the pool's threads; they stop when the last `Hasher` is dropped.
    jobs: mpsc::Sender<Job>,
    permits: Semaphore,
    waiting: AtomicUsize,
    queue: usize,
    /// A real hash of a random password: verifying against it costs what a real check costs, so an
    /// unknown login name takes as long as a wrong password.
    dummy: String,
}

impl Hasher {
    pub fn new(cfg: &Argon2Config) -> Result<Self, HashError> {
        let params = Params::new(cfg.memory_kib, cfg.iterations, cfg.parallelism, None)
            .map_err(|e| HashError::Failed(e.to_string()))?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let pool = if cfg.pool_size == 0 { std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2) } else { cfg.pool_size };
        let salt = SaltString::generate(&mut OsRng);
        let random = latchkey_core::secret::Token::generate();
        let dummy = argon2
            .hash_password(random.expose().as_bytes(), &salt)
            .map_err(|e| HashError::Failed(e.to_string()))?
            .to_string();
        return_large_blocks_to_the_system();
        let jobs = spawn_pool(pool, &argon2)?;
        Ok(Self {
            inner: Arc::new(Inner { jobs, permits: Semaphore::new(pool), waiting: AtomicUsize::new(0), queue: cfg.queue, dummy }),
        })
    }

    /// Hashes `secret` to a PHC string (`$argon2id$v=19$m=…`), parameters included.
    pub async fn hash(&self, secret: &str) -> Result<String, HashError> {
        let secret = secret.to_owned();
        self.run(move |argon2| {
            let salt = SaltString::generate(&mut OsRng);
            argon2.hash_password(secret.as_bytes(), &salt).map(|h| h.to_string()).map_err(|e| HashError::Failed(e.to_string()))
        })
        .await
    }

    /// Checks `secret` against a stored hash; `None` checks against the dummy so the time is the
    /// same. Returns whether it matched, and whether the stored hash should be redone with the
    /// current parameters.
    pub async fn verify(&self, secret: &str, stored: Option<&str>) -> Result<Verified, HashError> {
        let secret = secret.to_owned();
        let real = stored.is_some();
        let stored = stored.map(str::to_owned).unwrap_or_else(|| self.inner.dummy.clone());
        self.run(move |argon2| {
            let Ok(parsed) = PasswordHash::new(&stored) else {
                return Ok(Verified { matches: false, needs_rehash: false });
            };
            let matches = real && argon2.verify_password(secret.as_bytes(), &parsed).is_ok();
            let current = argon2.params();
            let needs_rehash = matches
                && (Params::try_from(&parsed).map(|p| p.m_cost() < current.m_cost() || p.t_cost() < current.t_cost()).unwrap_or(true)
                    || parsed.algorithm.as_str() != "argon2id");
            Ok(Verified { matches, needs_rehash })
        })
        .await
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Argon2<'static>) -> Result<T, HashError> + Send + 'static,
    ) -> Result<T, HashError> {
        let inner = self.inner.clone();
        // Refuse at once when the queue is full: a fast 503 beats an unbounded wait.
        if inner.waiting.fetch_add(1, Ordering::SeqCst) >= inner.queue + inner.permits.available_permits() {
            inner.waiting.fetch_sub(1, Ordering::SeqCst);
            metrics::counter!("latchkey_hash_rejected_total").increment(1);
            return Err(HashError::Busy);
        }
        let permit = inner.permits.acquire().await;
        inner.waiting.fetch_sub(1, Ordering::SeqCst);
        let _permit = permit.map_err(|_| HashError::Busy)?;
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |argon2| {
            let _ = done.send(work(argon2));
        });
        inner.jobs.send(job).map_err(|_| HashError::Failed("hashing pool stopped".into()))?;
        result.await.map_err(|_| HashError::Failed("a hashing thread stopped".into()))?
    }
}

/// Keeps glibc from holding on to freed hash memory (see the module's comment): allocations of
/// 128 KiB and more are mapped and unmapped on their own, whatever was freed before.
fn return_large_blocks_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes a tunable of the allocator; glibc takes its own lock.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// `size` threads taking jobs from one queue; the permits keep at most `size` jobs in it.
fn spawn_pool(size: usize, argon2: &Argon2<'static>) -> Result<mpsc::Sender<Job>, HashError> {
    let (tx, rx) = mpsc::channel::<Job>();
    let rx = Arc::new(Mutex::new(rx));
    for i in 0..size {
        let (rx, argon2) = (rx.clone(), argon2.clone());
        std::thread::Builder::new()
            .name(format!("latchkey-hash-{i}"))
            .spawn(move || loop {
                // The lock is held only while waiting for the next job, not while hashing.
                let next = rx.lock().map(|r| r.recv());
                match next {
                    // A panicking hash must not take the thread, and with it a pool slot, away.
                    Ok(Ok(job)) => drop(std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&argon2)))),
                    _ => break,
                }
            })
            .map_err(|e| HashError::Failed(format!("starting a hashing thread: {e}")))?;
    }
    Ok(tx)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    pub matches: bool,
    pub needs_rehash: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Argon2Config {
        Argon2Config { memory_kib: 64, iterations: 1, parallelism: 1, pool_size: 1, queue: 1 }
    }

    #[tokio::test]
    async fn hashes_verify_and_differ_by_salt() {
        let h = Hasher::new(&small()).unwrap();
        let a = h.hash("Welcome2Sonar").await.unwrap();
        let b = h.hash("Welcome2Sonar").await.unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=64,t=1,p=1$"));
        assert_ne!(a, b);
        assert!(h.verify("Welcome2Sonar", Some(&a)).await.unwrap().matches);
        assert!(!h.verify("welcome2sonar", Some(&a)).await.unwrap().matches);
        assert!(!h.verify("anything", None).await.unwrap().matches, "the dummy never matches");
        assert!(!h.verify("x", Some("not a hash")).await.unwrap().matches);
    }

    #[tokio::test]
    async fn weaker_stored_hashes_are_flagged_for_rehash() {
        let weak = Hasher::new(&small()).unwrap().hash("Welcome2Sonar").await.unwrap();
        let strong = Hasher::new(&Argon2Config { memory_kib: 128, ..small() }).unwrap();
        let v = strong.verify("Welcome2Sonar", Some(&weak)).await.unwrap();
        assert!(v.matches && v.needs_rehash);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_full_queue_answers_busy_instead_of_waiting() {
        let slow = Hasher::new(&Argon2Config { memory_kib: 16 * 1024, iterations: 8, parallelism: 1, pool_size: 1, queue: 1 }).unwrap();
        let tasks: Vec<_> = (0..8).map(|_| { let h = slow.clone(); tokio::spawn(async move { h.hash("Welcome2Sonar").await }) }).collect();
        let mut busy = 0;
        for t in tasks {
            if matches!(t.await.unwrap(), Err(HashError::Busy)) {
                busy += 1;
            }
        }
        assert!(busy >= 5, "with one worker and one queue slot most of 8 concurrent hashes are refused, got {busy}");
    }
}
