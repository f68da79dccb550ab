//! Argon2id hashing of passwords and PINs on a bounded pool: about one hash per core at a time, a
//! bounded queue behind it, and a fast "busy" beyond that. A sign-in flood can then neither exhaust
//! memory (each hash holds 19 MiB) nor starve the runtime threads that serve everything else.
//!
//! Memory: each pool thread allocates its 19 MiB of Argon2 blocks at its first hash and reuses them
//! for every later one ([`Worker`]). A fresh allocation per hash cost either way: glibc's dynamic
//! mmap threshold kept every freed block on the heap (the benchmark saw 388 MB resident after a few
//! hundred sign-ins), and with the threshold fixed each hash mapped fresh pages and faulted in all
//! 4,864 of them, a third slower than the hash itself. So memory is bounded by the pool's size
//! (a pool of two holds 38 MiB once it has hashed), and [`Hasher::new`] still fixes the threshold
//! for the rare hash with other parameters.
//!
//! Priority: the pool's threads run at a lower CPU priority (nice 19, the lowest) than the threads serving
//! requests. Hashing is the bulk of the CPU a sign-in flood brings; everything else a request does
//! is short, and should not wait behind a 20 ms hash on a busy core (the benchmark's `/me` p99 rose
//! sixfold during a flood). With nothing else to run, the hashes get the whole machine as before.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{Output, ParamsString, PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
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
type Job = Box<dyn FnOnce(&mut Worker) + Send>;

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
        self.run(move |worker| worker.hash(secret.as_bytes())).await
    }

    /// Checks `secret` against a stored hash; `None` checks against the dummy so the time is the
    /// same. Returns whether it matched, and whether the stored hash should be redone with the
    /// current parameters.
    pub async fn verify(&self, secret: &str, stored: Option<&str>) -> Result<Verified, HashError> {
        let secret = secret.to_owned();
        let real = stored.is_some();
        let stored = stored.map(str::to_owned).unwrap_or_else(|| self.inner.dummy.clone());
        self.run(move |worker| {
            let Ok(parsed) = PasswordHash::new(&stored) else {
                return Ok(Verified { matches: false, needs_rehash: false });
            };
            let matches = worker.verify(secret.as_bytes(), &parsed) && real;
            let current = worker.argon2.params();
            let needs_rehash = matches
                && (Params::try_from(&parsed).map(|p| p.m_cost() < current.m_cost() || p.t_cost() < current.t_cost()).unwrap_or(true)
                    || parsed.algorithm.as_str() != "argon2id");
            Ok(Verified { matches, needs_rehash })
        })
        .await
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Worker) -> Result<T, HashError> + Send + 'static,
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
        let job: Job = Box::new(move |worker| {
            let _ = done.send(work(worker));
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

/// The pool's CPU priority: the lowest (see the module's comment).
const HASHING_NICE: i32 = 19;

/// `size` threads taking jobs from one queue; the permits keep at most `size` jobs in it.
fn spawn_pool(size: usize, argon2: &Argon2<'static>) -> Result<mpsc::Sender<Job>, HashError> {
    let (tx, rx) = mpsc::channel::<Job>();
    let rx = Arc::new(Mutex::new(rx));
    for i in 0..size {
        let (rx, argon2) = (rx.clone(), argon2.clone());
        std::thread::Builder::new()
            .name(format!("latchkey-hash-{i}"))
            .spawn(move || {
                lower_this_threads_priority();
                let mut worker = Worker { argon2, memory: Vec::new() };
                loop {
                    // The lock is held only while waiting for the next job, not while hashing.
                    let next = rx.lock().map(|r| r.recv());
                    match next {
                        // A panicking hash must not take the thread, and with it a pool slot, away.
                        Ok(Ok(job)) => drop(std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut worker)))),
                        _ => break,
                    }
                }
            })
            .map_err(|e| HashError::Failed(format!("starting a hashing thread: {e}")))?;
    }
    Ok(tx)
}

/// [`HASHING_NICE`] for the calling thread (on Linux, `setpriority` with `PRIO_PROCESS` and 0 names the
/// calling thread, not the whole process). Lowering one's own priority needs no privilege; if it
/// fails anyway, the hashes run at normal priority, as before.
fn lower_this_threads_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority only changes this thread's scheduling weight.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, HASHING_NICE);
    }
}

/// A pool thread's hashing: the service's Argon2id and the thread's own working memory, kept from
/// one hash to the next (see the module's comment).
struct Worker {
    argon2: Argon2<'static>,
    memory: Vec<Block>,
}

impl Worker {
    /// Argon2 of `secret` and `salt` under `with` (the service's parameters, or a stored hash's)
    /// into `out`, in the kept memory when `with` needs as much as the service's parameters do.
    fn compute(&mut self, with: &Argon2<'_>, secret: &[u8], salt: &[u8], out: &mut [u8]) -> Result<(), argon2::Error> {
        let blocks = with.params().block_count();
        if blocks != self.argon2.params().block_count() {
            // A stored hash with other parameters (a sign-in redoes it with ours): memory for once.
            return with.hash_password_into(secret, salt, out);
        }
        if self.memory.len() != blocks {
            self.memory = vec![Block::default(); blocks];
        }
        with.hash_password_into_with_memory(secret, salt, out, &mut self.memory)
    }

    fn hash(&mut self, secret: &[u8]) -> Result<String, HashError> {
        let failed = |e: &dyn std::fmt::Display| HashError::Failed(e.to_string());
        let salt = SaltString::generate(&mut OsRng);
        let mut salt_buf = [0u8; 64];
        let salt_bytes = salt.as_salt().decode_b64(&mut salt_buf).map_err(|e| failed(&e))?;
        let argon2 = self.argon2.clone();
        let len = argon2.params().output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
        let output = Output::init_with(len, |out| self.compute(&argon2, secret, salt_bytes, out).map_err(Into::into)).map_err(|e| failed(&e))?;
        let phc = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(argon2.params()).map_err(|e| failed(&e))?,
            salt: Some(salt.as_salt()),
            hash: Some(output),
        };
        Ok(phc.to_string())
    }

    /// Whether `secret` gives `stored`'s output under `stored`'s own algorithm and parameters;
    /// the outputs are compared in constant time (`Output`'s equality).
    fn verify(&mut self, secret: &[u8], stored: &PasswordHash<'_>) -> bool {
        let (Some(salt), Some(expected)) = (&stored.salt, &stored.hash) else { return false };
        let Ok(algorithm) = Algorithm::try_from(stored.algorithm) else { return false };
        let Ok(version) = stored.version.map(Version::try_from).transpose() else { return false };
        let Ok(params) = Params::try_from(stored) else { return false };
        let with = Argon2::new(algorithm, version.unwrap_or_default(), params);
        let mut salt_buf = [0u8; 64];
        let Ok(salt_bytes) = salt.decode_b64(&mut salt_buf) else { return false };
        match Output::init_with(expected.len(), |out| self.compute(&with, secret, salt_bytes, out).map_err(Into::into)) {
            Ok(computed) => computed == *expected,
            Err(_) => false,
        }
    }
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

    /// Our PHC strings verify with the argon2 crate's own verifier, and its hashes (including an
    /// Argon2i one with other parameters) verify with ours: a stored hash outlives this code.
    #[tokio::test]
    async fn hashes_are_standard_phc_strings_both_ways() {
        let h = Hasher::new(&small()).unwrap();
        let ours = h.hash("Welcome2Sonar").await.unwrap();
        let standard = Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(64, 1, 1, None).unwrap());
        use argon2::password_hash::PasswordVerifier;
        assert!(standard.verify_password(b"Welcome2Sonar", &PasswordHash::new(&ours).unwrap()).is_ok());
        assert!(standard.verify_password(b"Welcome2Sonar!", &PasswordHash::new(&ours).unwrap()).is_err());

        let theirs = standard.hash_password(b"Welcome2Sonar", &SaltString::generate(&mut OsRng)).unwrap().to_string();
        assert_eq!(h.verify("Welcome2Sonar", Some(&theirs)).await.unwrap(), Verified { matches: true, needs_rehash: false });
        assert!(!h.verify("Welcome2Sonar!", Some(&theirs)).await.unwrap().matches);

        let argon2i = Argon2::new(Algorithm::Argon2i, Version::V0x13, Params::new(32, 3, 1, None).unwrap());
        let old = argon2i.hash_password(b"Welcome2Sonar", &SaltString::generate(&mut OsRng)).unwrap().to_string();
        assert_eq!(h.verify("Welcome2Sonar", Some(&old)).await.unwrap(), Verified { matches: true, needs_rehash: true });
        assert!(!h.verify("welcome2sonar", Some(&old)).await.unwrap().matches);
    }

    /// The pool's threads yield to the threads serving requests.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn hashing_threads_run_at_a_lower_priority() {
        let h = Hasher::new(&small()).unwrap();
        h.hash("Welcome2Sonar").await.unwrap();
        let mut nices = Vec::new();
        for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if comm.trim().starts_with("latchkey-hash") {
                let stat = std::fs::read_to_string(task.path().join("stat")).unwrap();
                // Field 19 (nice), counted from the state (field 3) after the command's ')'.
                let after = stat.rsplit_once(')').unwrap().1;
                nices.push(after.split_whitespace().nth(16).unwrap().parse::<i32>().unwrap());
            }
        }
        assert!(!nices.is_empty(), "the pool's threads are named latchkey-hash-N");
        assert!(nices.iter().all(|n| *n == HASHING_NICE), "every hashing thread at nice {HASHING_NICE}: {nices:?}");
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
