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

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::{Output, ParamsString, PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use latchkey_core::random;

use crate::config::Argon2Config;

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// The pool and its queue are full, or the wait would be too long: answer 503 with Retry-After.
    #[error("hashing pool busy")]
    Busy,
    #[error("hashing failed: {0}")]
    Failed(String),
}

#[derive(Clone)]
pub struct Hasher {
    inner: Arc<Inner>,
}

/// One hash to run on a pool thread. It carries its queue slot, and it sends its own result back
/// or, when nobody waits for it any more, skips the hash.
type Job = Box<dyn FnOnce(&mut Worker) + Send>;

struct Inner {
    /// To the pool's threads; they stop when the last `Hasher` is dropped.
    jobs: mpsc::Sender<Job>,
    load: Arc<Load>,
    /// A real hash of a random password: verifying against it costs what a real check costs, so an
    /// unknown login name takes as long as a wrong password.
    dummy: String,
}

/// What the pool holds, and how long a hash takes: shared by the `Hasher`, every [`Slot`] and
/// every job, so that a slot is given back wherever its job ends.
///
/// Cancellation: a request can be dropped at any `.await` (its client hung up, or
/// `request_timeout_secs` cut it off). Its job keeps its [`Slot`] for as long as the job exists —
/// in the channel, or running on a pool thread — and the slot's `Drop` gives it back, so neither
/// a request dropped while queued nor one dropped while its hash runs can leak a slot or let more
/// jobs in than the pool and its queue hold. A job whose requester is gone is skipped unstarted.
struct Load {
    /// Hashes computed at once: the pool's threads.
    pool: usize,
    /// Jobs that may wait for a thread beyond the `pool` running ones.
    queue: usize,
    /// A job that would wait longer than this is refused at once (503, Retry-After), and one that
    /// did wait longer is answered so without its hash: its request would run out of time anyway
    /// (a third of `request_timeout_secs`; Complete Setup hashes twice).
    max_wait: Duration,
    /// Jobs admitted and not yet ended: queued plus running.
    admitted: AtomicUsize,
    /// Jobs hashing on a pool thread now.
    running: AtomicUsize,
    /// Jobs skipped because their request was gone before their turn came.
    skipped: AtomicU64,
    /// Requests refused: queue full, the wait too long, or waited too long.
    rejected: AtomicU64,
    /// A moving average of one hash's duration, in nanoseconds, for the expected wait.
    hash_nanos: AtomicU64,
}

/// A hashing pool's load at one moment, for `/metrics` and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashLoad {
    /// Admitted jobs waiting for a pool thread (including those whose request is gone and which
    /// will be skipped).
    pub queued: usize,
    /// Jobs hashing now: the pool's permits in use.
    pub running: usize,
    pub skipped_total: u64,
    pub rejected_total: u64,
}

impl Hasher {
    /// `request_timeout` bounds how long a hash may wait for the pool (see [`Load::max_wait`]).
    pub fn new(cfg: &Argon2Config, request_timeout: Duration) -> Result<Self, HashError> {
        let params = Params::new(cfg.memory_kib, cfg.iterations, cfg.parallelism, None)
            .map_err(|e| HashError::Failed(e.to_string()))?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let pool = if cfg.pool_size == 0 { std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2) } else { cfg.pool_size };
        let salt = SaltString::generate(&mut random::Source);
        let random = latchkey_core::secret::Token::generate();
        let started = Instant::now();
        let dummy = argon2
            .hash_password(random.expose().as_bytes(), &salt)
            .map_err(|e| HashError::Failed(e.to_string()))?
            .to_string();
        let first_hash = started.elapsed();
        return_large_blocks_to_the_system();
        let jobs = spawn_pool(pool, &argon2)?;
        let load = Arc::new(Load {
            pool,
            queue: cfg.queue,
            max_wait: request_timeout / 3,
            admitted: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            skipped: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            hash_nanos: AtomicU64::new(first_hash.as_nanos() as u64),
        });
        Ok(Self { inner: Arc::new(Inner { jobs, load, dummy }) })
    }

    /// The pool's load now.
    pub fn load(&self) -> HashLoad {
        let load = &self.inner.load;
        let admitted = load.admitted.load(Ordering::SeqCst);
        let running = load.running.load(Ordering::SeqCst);
        HashLoad {
            queued: admitted.saturating_sub(running),
            running,
            skipped_total: load.skipped.load(Ordering::Relaxed),
            rejected_total: load.rejected.load(Ordering::Relaxed),
        }
    }

    /// A place in the pool for one hash, taken before the request does anything else: a sign-in
    /// the pool has no room for is refused before it reads the store, so refusals under a flood
    /// cost next to nothing and leave the cores to the hashes. Dropped unused, the place is free.
    pub fn admit(&self) -> Result<Admitted, HashError> {
        Ok(Admitted { hasher: self.clone(), slot: Slot::admit(&self.inner.load)? })
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
        self.admit()?.verify(secret, stored).await
    }

    async fn verify_in(&self, slot: Slot, secret: &str, stored: Option<&str>) -> Result<Verified, HashError> {
        let secret = secret.to_owned();
        let real = stored.is_some();
        let stored = stored.map(str::to_owned).unwrap_or_else(|| self.inner.dummy.clone());
        self.run_in(slot, move |worker| {
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

    /// Admits the work (or refuses it at once) and runs it ([`Hasher::run_in`]).
    async fn run<T: Send + 'static>(&self, work: impl FnOnce(&mut Worker) -> Result<T, HashError> + Send + 'static) -> Result<T, HashError> {
        self.run_in(Slot::admit(&self.inner.load)?, work).await
    }

    /// Queues the work with its slot and waits for its result. The only `.await` is the last
    /// line: dropped there, the job keeps its slot until a pool thread takes it and skips it.
    async fn run_in<T: Send + 'static>(
        &self,
        slot: Slot,
        work: impl FnOnce(&mut Worker) -> Result<T, HashError> + Send + 'static,
    ) -> Result<T, HashError> {
        let (done, result) = tokio::sync::oneshot::channel();
        let queued_at = Instant::now();
        let job: Job = Box::new(move |worker| {
            let slot = slot;
            if done.is_closed() {
                slot.load.skipped.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("latchkey_hash_skipped_total").increment(1);
                return;
            }
            if queued_at.elapsed() > slot.load.max_wait {
                slot.load.refuse();
                drop(slot);
                let _ = done.send(Err(HashError::Busy));
                return;
            }
            let running = slot.start();
            let value = work(worker);
            running.finish();
            // The slot is given back before the answer: a requester that has its answer sees
            // the pool without its job.
            drop(slot);
            let _ = done.send(value);
        });
        // A pool that stopped hands the job back in the error, and dropping it frees the slot.
        self.inner.jobs.send(job).map_err(|_| HashError::Failed("hashing pool stopped".into()))?;
        result.await.map_err(|_| HashError::Failed("a hashing thread stopped".into()))?
    }
}

/// A place in the hashing pool, held from before a request's first read until its hash ends
/// ([`Hasher::admit`]).
pub struct Admitted {
    hasher: Hasher,
    slot: Slot,
}

impl Admitted {
    /// [`Hasher::verify`] in this place.
    pub async fn verify(self, secret: &str, stored: Option<&str>) -> Result<Verified, HashError> {
        self.hasher.verify_in(self.slot, secret, stored).await
    }
}

impl Load {
    fn refuse(&self) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("latchkey_hash_rejected_total").increment(1);
    }

    /// How long a job admitted behind `ahead` others would wait for a thread.
    fn expected_wait(&self, ahead: usize) -> Duration {
        let rounds = (ahead + 1).saturating_sub(self.pool).div_ceil(self.pool.max(1));
        Duration::from_nanos(self.hash_nanos.load(Ordering::Relaxed).saturating_mul(rounds as u64))
    }

    /// Folds one hash's duration into the moving average (weight 1/8).
    fn record(&self, took: Duration) {
        let old = self.hash_nanos.load(Ordering::Relaxed);
        let sample = took.as_nanos().min(u64::MAX as u128) as u64;
        self.hash_nanos.store(old - old / 8 + sample / 8, Ordering::Relaxed);
    }
}

/// A job's place in the pool, from its admission until it ends (hashed, skipped or dropped with
/// the job): `Drop` gives it back, whichever way the job ends.
struct Slot {
    load: Arc<Load>,
}

impl Slot {
    /// A slot, or `Busy` at once when the pool and its queue are full or the wait for a thread
    /// would be longer than [`Load::max_wait`]: a fast 503 beats a request that times out.
    fn admit(load: &Arc<Load>) -> Result<Slot, HashError> {
        let ahead = load.admitted.fetch_add(1, Ordering::SeqCst);
        // From here on the slot is held; its Drop undoes the count if it is refused.
        let slot = Slot { load: load.clone() };
        if ahead >= load.pool + load.queue || load.expected_wait(ahead) > load.max_wait {
            load.refuse();
            return Err(HashError::Busy);
        }
        Ok(slot)
    }

    /// Marks the job hashing: one of the pool's permits in use until [`Running::finish`] or drop.
    fn start(&self) -> Running<'_> {
        self.load.running.fetch_add(1, Ordering::SeqCst);
        Running { load: &self.load, started: Instant::now() }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.load.admitted.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A hash in progress; dropped (also by a panicking hash) it frees its permit.
struct Running<'a> {
    load: &'a Load,
    started: Instant,
}

impl Running<'_> {
    fn finish(self) {
        self.load.record(self.started.elapsed());
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.load.running.fetch_sub(1, Ordering::SeqCst);
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

/// `size` threads taking jobs from one queue; admission ([`Slot::admit`]) bounds what waits in it.
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
        let salt = SaltString::generate(&mut random::Source);
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

    /// A request time limit far beyond any test's hashes: only the queue's length refuses.
    const TIMEOUT: Duration = Duration::from_secs(600);

    fn small() -> Argon2Config {
        Argon2Config { memory_kib: 64, iterations: 1, parallelism: 1, pool_size: 1, queue: 1 }
    }

    #[tokio::test]
    async fn hashes_verify_and_differ_by_salt() {
        let h = Hasher::new(&small(), TIMEOUT).unwrap();
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
        let weak = Hasher::new(&small(), TIMEOUT).unwrap().hash("Welcome2Sonar").await.unwrap();
        let strong = Hasher::new(&Argon2Config { memory_kib: 128, ..small() }, TIMEOUT).unwrap();
        let v = strong.verify("Welcome2Sonar", Some(&weak)).await.unwrap();
        assert!(v.matches && v.needs_rehash);
    }

    /// Our PHC strings verify with the argon2 crate's own verifier, and its hashes (including an
    /// Argon2i one with other parameters) verify with ours: a stored hash outlives this code.
    #[tokio::test]
    async fn hashes_are_standard_phc_strings_both_ways() {
        let h = Hasher::new(&small(), TIMEOUT).unwrap();
        let ours = h.hash("Welcome2Sonar").await.unwrap();
        let standard = Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(64, 1, 1, None).unwrap());
        use argon2::password_hash::PasswordVerifier;
        assert!(standard.verify_password(b"Welcome2Sonar", &PasswordHash::new(&ours).unwrap()).is_ok());
        assert!(standard.verify_password(b"Welcome2Sonar!", &PasswordHash::new(&ours).unwrap()).is_err());

        let theirs = standard.hash_password(b"Welcome2Sonar", &SaltString::generate(&mut random::Source)).unwrap().to_string();
        assert_eq!(h.verify("Welcome2Sonar", Some(&theirs)).await.unwrap(), Verified { matches: true, needs_rehash: false });
        assert!(!h.verify("Welcome2Sonar!", Some(&theirs)).await.unwrap().matches);

        let argon2i = Argon2::new(Algorithm::Argon2i, Version::V0x13, Params::new(32, 3, 1, None).unwrap());
        let old = argon2i.hash_password(b"Welcome2Sonar", &SaltString::generate(&mut random::Source)).unwrap().to_string();
        assert_eq!(h.verify("Welcome2Sonar", Some(&old)).await.unwrap(), Verified { matches: true, needs_rehash: true });
        assert!(!h.verify("welcome2sonar", Some(&old)).await.unwrap().matches);
    }

    /// The pool's threads yield to the threads serving requests.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn hashing_threads_run_at_a_lower_priority() {
        let h = Hasher::new(&small(), TIMEOUT).unwrap();
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

    /// Parameters whose one hash takes a good part of a second (64 MiB, 16 passes): long enough
    /// to drop other requests while it runs.
    fn slow(pool_size: usize, queue: usize) -> Argon2Config {
        Argon2Config { memory_kib: 64 * 1024, iterations: 16, parallelism: 1, pool_size, queue }
    }

    /// Waits (up to 30 s) until the pool's load satisfies `ready`.
    async fn until(h: &Hasher, what: &str, ready: impl Fn(HashLoad) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ready(h.load()) {
            assert!(Instant::now() < deadline, "{what}: the pool stayed at {:?}", h.load());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// A hash started in a task of its own, as a request starts one.
    fn request(h: &Hasher) -> tokio::task::JoinHandle<Result<String, HashError>> {
        let h = h.clone();
        tokio::spawn(async move { h.hash("Welcome2Sonar").await })
    }

    /// Requests dropped while they wait for the pool (their clients hung up) give their queue
    /// slots back and are never hashed: afterwards the pool admits as many as before.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_dropped_while_queued_give_their_slots_back_unhashed() {
        let h = Hasher::new(&slow(1, 2), TIMEOUT).unwrap();
        let running = request(&h);
        until(&h, "the first hash runs", |l| l.running == 1).await;
        let (b, c) = (request(&h), request(&h));
        until(&h, "two requests wait", |l| l.queued == 2).await;
        b.abort();
        c.abort();
        assert!(running.await.unwrap().is_ok());
        until(&h, "every slot is back", |l| l.queued == 0 && l.running == 0).await;
        assert_eq!(h.load().skipped_total, 2, "the dropped requests' jobs were skipped, not hashed");

        // The whole pool and queue again: one hashing, two waiting, none refused.
        let all: Vec<_> = (0..3).map(|_| request(&h)).collect();
        for r in all {
            assert!(r.await.unwrap().is_ok(), "a slot leaked: {:?}", h.load());
        }
    }

    /// A place taken before a request's reads counts against the pool at once, and a request
    /// dropped before its hash (its client hung up during the reads) gives it back.
    #[tokio::test]
    async fn a_place_taken_early_counts_at_once_and_comes_back_when_dropped() {
        let h = Hasher::new(&small(), TIMEOUT).unwrap();
        let first = h.admit().unwrap();
        assert!(h.admit().is_ok(), "one hashing and one waiting: the pool of one and its queue of one");
        let second = h.admit().unwrap();
        assert!(matches!(h.admit(), Err(HashError::Busy)), "a third has no room");
        assert_eq!(h.load().queued, 2);
        drop(second);
        assert!(first.verify("Welcome2Sonar", None).await.is_ok());
        assert_eq!(h.load(), HashLoad { queued: 0, running: 0, skipped_total: 0, rejected_total: 1 });
    }

    /// A request dropped while its hash runs does not free its permit until the hash ends:
    /// never more hashes at once, or waiting, than the pool and its queue hold.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_dropped_mid_hash_holds_its_permit_until_the_hash_ends() {
        let h = Hasher::new(&slow(1, 0), TIMEOUT).unwrap();
        let first = request(&h);
        until(&h, "the first hash runs", |l| l.running == 1).await;
        first.abort();
        assert!(matches!(h.hash("Welcome2Sonar").await, Err(HashError::Busy)), "the pool's one thread is still hashing for the dropped request");
        until(&h, "the dropped request's hash ends", |l| l.running == 0 && l.queued == 0).await;
        assert!(h.hash("Welcome2Sonar").await.is_ok());
    }

    /// A hash that would wait longer than a third of the request's time limit is refused at
    /// once (a fast 503) instead of running out of time in the queue.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_wait_longer_than_the_time_limit_allows_is_refused_at_once() {
        let h = Hasher::new(&slow(1, 8), Duration::from_millis(150)).unwrap();
        let first = request(&h);
        until(&h, "the first hash runs", |l| l.running == 1).await;
        let started = Instant::now();
        assert!(matches!(h.hash("Welcome2Sonar").await, Err(HashError::Busy)));
        assert!(started.elapsed() < Duration::from_millis(50), "refused without waiting, took {:?}", started.elapsed());
        assert!(first.await.unwrap().is_ok());
        assert_eq!(h.load().rejected_total, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_full_queue_answers_busy_instead_of_waiting() {
        let slow = Hasher::new(&Argon2Config { memory_kib: 16 * 1024, iterations: 8, parallelism: 1, pool_size: 1, queue: 1 }, TIMEOUT).unwrap();
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
