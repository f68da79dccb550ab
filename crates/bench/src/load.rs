//! The load: a closed loop (N workers, each sending its next request when the last answered) for
//! throughput and latency, and an open loop (a fixed arrival rate whatever the answers) for the
//! flood, where a closed loop would politely slow down with the server.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::RETRY_AFTER;
use tokio::sync::Mutex;

/// What came back, request by request.
#[derive(Default, Debug, Clone)]
pub struct Outcome {
    pub statuses: BTreeMap<u16, u64>,
    /// Transport failures (refused, reset, timed out): never expected.
    pub failures: u64,
    /// Answers 429/503 that did not say when to come back.
    pub busy_without_retry_after: u64,
    /// Latency of every answer, in microseconds.
    pub latencies_us: Vec<u64>,
    /// Latency of the 429/503 answers alone.
    pub busy_latencies_us: Vec<u64>,
    pub elapsed: Duration,
}

impl Outcome {
    pub fn count(&self, status: u16) -> u64 {
        self.statuses.get(&status).copied().unwrap_or(0)
    }

    pub fn server_errors(&self) -> u64 {
        self.statuses.iter().filter(|(s, _)| **s >= 500 && **s != 503).map(|(_, n)| n).sum::<u64>()
    }

    pub fn busy(&self) -> u64 {
        self.count(429) + self.count(503)
    }

    /// Answers with `status` per second of the run.
    pub fn rate(&self, status: u16) -> f64 {
        self.count(status) as f64 / self.elapsed.as_secs_f64()
    }

    pub fn percentile_ms(&self, p: f64) -> f64 {
        percentile_ms(&self.latencies_us, p)
    }

    fn record(&mut self, result: &reqwest::Result<reqwest::Response>, latency: Duration) {
        let us = latency.as_micros() as u64;
        match result {
            Ok(resp) => {
                let status = resp.status().as_u16();
                *self.statuses.entry(status).or_default() += 1;
                self.latencies_us.push(us);
                if status == 429 || status == 503 {
                    self.busy_latencies_us.push(us);
                    if !resp.headers().contains_key(RETRY_AFTER) {
                        self.busy_without_retry_after += 1;
                    }
                }
            }
            Err(_) => self.failures += 1,
        }
    }

    fn merge(&mut self, other: Outcome) {
        for (s, n) in other.statuses {
            *self.statuses.entry(s).or_default() += n;
        }
        self.failures += other.failures;
        self.busy_without_retry_after += other.busy_without_retry_after;
        self.latencies_us.extend(other.latencies_us);
        self.busy_latencies_us.extend(other.busy_latencies_us);
    }
}

pub fn percentile_ms(samples_us: &[u64], p: f64) -> f64 {
    if samples_us.is_empty() {
        return f64::NAN;
    }
    let mut sorted = samples_us.to_vec();
    sorted.sort_unstable();
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)] as f64 / 1000.0
}

/// A client for the load: plain HTTP/1.1 keep-alive, enough idle connections for every worker.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("an HTTP client")
}

/// `workers` loops each sending `request(i)` (i counts that worker's requests) until `duration`
/// has passed.
pub async fn closed_loop<F, Fut>(workers: usize, duration: Duration, request: F) -> Outcome
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = reqwest::Result<reqwest::Response>> + Send,
{
    let request = Arc::new(request);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..workers {
        let request = request.clone();
        tasks.spawn(async move {
            let mut out = Outcome::default();
            let mut i = 0;
            while started.elapsed() < duration {
                let sent = Instant::now();
                let result = request(w, i).await;
                out.record(&result, sent.elapsed());
                // The body is read so the connection goes back to the pool.
                if let Ok(resp) = result {
                    let _ = resp.bytes().await;
                }
                i += 1;
            }
            out
        });
    }
    let mut total = Outcome::default();
    while let Some(out) = tasks.join_next().await {
        total.merge(out.expect("a load worker"));
    }
    total.elapsed = started.elapsed();
    total
}

/// Sends `request(i)` at `rate` per second for `duration`, each on its own task, whether or not
/// earlier ones have answered; waits for the last answer.
pub async fn open_loop<F, Fut>(rate: f64, duration: Duration, request: F) -> Outcome
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = reqwest::Result<reqwest::Response>> + Send + 'static,
{
    let total = Arc::new(Mutex::new(Outcome::default()));
    let interval = Duration::from_secs_f64(1.0 / rate);
    let started = Instant::now();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = tokio::task::JoinSet::new();
    let mut i = 0;
    while started.elapsed() < duration {
        ticker.tick().await;
        let fut = request(i);
        let total = total.clone();
        tasks.spawn(async move {
            let sent = Instant::now();
            let result = fut.await;
            let latency = sent.elapsed();
            total.lock().await.record(&result, latency);
            if let Ok(resp) = result {
                let _ = resp.bytes().await;
            }
        });
        i += 1;
    }
    while tasks.join_next().await.is_some() {}
    let mut out = std::mem::take(&mut *total.lock().await);
    out.elapsed = started.elapsed();
    out
}

/// Runs `job(i)` for i in 0..n with at most `workers` at once; the results in order.
pub async fn for_each<T, F, Fut>(n: usize, workers: usize, job: F) -> anyhow::Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<T>> + Send + 'static,
{
    let job = Arc::new(job);
    let limit = Arc::new(tokio::sync::Semaphore::new(workers));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let permit = limit.clone().acquire_owned().await?;
        let job = job.clone();
        tasks.spawn(async move {
            let r = job(i).await;
            drop(permit);
            (i, r)
        });
    }
    let mut results: Vec<Option<T>> = (0..n).map(|_| None).collect();
    while let Some(joined) = tasks.join_next().await {
        let (i, r) = joined?;
        results[i] = Some(r?);
    }
    Ok(results.into_iter().map(|r| r.expect("every job ran")).collect())
}

/// Sends `request(i)` once for each i in 0..n, `workers` at a time, as fast as answers come.
pub async fn drain<F, Fut>(n: usize, workers: usize, request: F) -> Outcome
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = reqwest::Result<reqwest::Response>> + Send,
{
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let request = Arc::new(request);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers {
        let (next, request) = (next.clone(), request.clone());
        tasks.spawn(async move {
            let mut out = Outcome::default();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    break out;
                }
                let sent = Instant::now();
                let result = request(i).await;
                out.record(&result, sent.elapsed());
                if let Ok(resp) = result {
                    let _ = resp.bytes().await;
                }
            }
        });
    }
    let mut total = Outcome::default();
    while let Some(out) = tasks.join_next().await {
        total.merge(out.expect("a load worker"));
    }
    total.elapsed = started.elapsed();
    total
}
