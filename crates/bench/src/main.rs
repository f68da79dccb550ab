//! `bash scripts/bench.sh` (builds, then runs this): starts the release server on temporary stores, drives
//! it over HTTP from this machine, and prints (and writes into `docs/benchmarks.md`) the figures
//! P1–P5 of the performance issue beside their targets:
//!
//! - P1 password sign-ins per second against raw Argon2id hashes per second on the same cores;
//! - P2 `GET /api/v1/me` against `GET /healthz`, on SQLite and on PostgreSQL;
//! - P3 `/me` latency idle and during a sign-in flood at twice the sign-in capacity;
//! - P4 idle memory and the time from process start to `/readyz` 200;
//! - P5 second-factor verifications per second (TOTP, recovery codes).
//!
//! Flags: `--quick` (short runs, to check the benchmark itself works), `--no-write`,
//! `--out FILE` (default `docs/benchmarks.md` of the workspace), `--only p2,p5` (some figures
//! only, for profiling one of them; implies `--no-write`, since the table would be partial),
//! `--flows N` (P5's sign-in flows per factor, 5,000 by default: more make a longer measurement).

mod accounts;
mod load;
mod node;
mod report;
mod smtp_sink;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use latchkey_core::two_factor::totp::code_now;
use serde_json::json;

use load::Outcome;
use node::{Argon2, Node};
use report::{Report, Row};

struct Options {
    quick: bool,
    write: Option<PathBuf>,
    /// Lower-case figure names to run; empty runs all.
    only: Vec<String>,
    /// P5's sign-in flows per factor (default 5,000; 300 with `--quick`).
    flows: Option<usize>,
}

impl Options {
    fn parse() -> anyhow::Result<Self> {
        let mut o = Options { quick: false, write: Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/benchmarks.md")), only: Vec::new(), flows: None };
        let mut args = std::env::args().skip(1);
        while let Some(a) = args.next() {
            match a.as_str() {
                "--quick" => o.quick = true,
                "--no-write" => o.write = None,
                "--out" => o.write = Some(args.next().context("--out needs a file")?.into()),
                "--flows" => o.flows = Some(args.next().and_then(|n| n.parse().ok()).context("--flows needs a number")?),
                "--only" => o.only = args.next().context("--only needs figures, such as p2,p5")?.to_lowercase().split(',').map(str::to_owned).collect(),
                other => anyhow::bail!("unknown argument {other}; flags: --quick, --no-write, --out FILE, --only p1,p2,…, --flows N"),
            }
        }
        if !o.only.is_empty() {
            o.write = None;
        }
        Ok(o)
    }

    fn runs(&self, figure: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|f| f == figure)
    }

    /// A measuring period: the full length, or a fifth of it with `--quick`.
    fn secs(&self, full: u64) -> Duration {
        if self.quick { Duration::from_millis(full * 200) } else { Duration::from_secs(full) }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("latchkey-bench: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run() -> anyhow::Result<bool> {
    let opts = Options::parse()?;
    let bin = node::release_binary()?;
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mut rows = Vec::new();

    if opts.runs("p4") {
        eprintln!("P4: start-up and idle memory");
        rows.extend(p4_start_and_memory(&bin, &opts).await?);
    }

    if opts.runs("p1") || opts.runs("p2") || opts.runs("p3") {
        eprintln!("P1–P3 on SQLite (Argon2id m={} KiB, t={})", Argon2::PRODUCTION.memory_kib, Argon2::PRODUCTION.iterations);
        let dir = tempfile::tempdir()?;
        let (sqlite, _) = Node::start(&bin, dir.path(), None, Argon2::PRODUCTION).await?;
        let users = accounts::active_users(&sqlite, 64, false).await?;
        // P3's flood is twice the measured sign-in capacity, so P3 measures P1 too.
        let mut capacity = None;
        if opts.runs("p1") || opts.runs("p3") {
            let (p1_row, sign_ins_per_s) = p1_sign_in_vs_argon2(&sqlite, &users, cores, &opts).await?;
            rows.push(p1_row);
            capacity = Some(sign_ins_per_s);
        }
        if opts.runs("p2") {
            rows.push(p2_me_vs_healthz(&sqlite, &users, "SQLite", &opts).await?);
        }
        if let (true, Some(capacity)) = (opts.runs("p3"), capacity) {
            rows.extend(p3_flood(&sqlite, &users, capacity, &opts).await?);
        }
    }

    if opts.runs("p2") {
        eprintln!("P2 on PostgreSQL");
        rows.extend(p2_postgres(&bin, &opts).await?);
    }

    if opts.runs("p5") {
        eprintln!("P5: second-factor verifications on SQLite");
        rows.extend(p5_second_factor(&bin, &opts).await?);
    }

    let report = Report { header: header(cores, &opts), rows };
    let table = report.markdown();
    println!("\n{table}");
    if let Some(path) = &opts.write {
        report::write(path, &table)?;
        eprintln!("written to {}", path.display());
    }
    Ok(report.all_met())
}

fn header(cores: usize, opts: &Options) -> Vec<String> {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("model name").map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())))
        .unwrap_or_else(|| "unknown CPU".into());
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let date = time::OffsetDateTime::now_utc().date();
    let mut h = vec![
        format!("Run: {date}, commit `{commit}`{}", if opts.quick { ", **--quick** (short periods, figures indicative only)" } else { "" }),
        format!("Machine: {cores} cores ({cpu}); the load generator runs on the same cores as the server"),
        format!(
            "Argon2id: m={} KiB, t={}, p=1, the server's default; its hashing pool has one thread per core ({cores})",
            Argon2::PRODUCTION.memory_kib,
            Argon2::PRODUCTION.iterations
        ),
        "Server: the release build, `latchkey serve`, log level warn, SQLite in a temporary data dir or a fresh PostgreSQL database on 127.0.0.1".into(),
    ];
    h.push("Email: the development outbox (the embedded default), except P5's last row, whose server sends over SMTP to a relay on loopback that the benchmark runs (it accepts and counts messages)".into());
    h.push("P5's accounts are prepared with cheap Argon2id (m=8 KiB, t=1) so thousands of second-factor flows can be opened quickly; the measured request checks the code, consumes it atomically and opens the session, with no password hash in it".into());
    h
}

/// P1: sign-ins per second at a concurrency that keeps the hashing pool busy, against what the
/// same cores hash per second with nothing else to do.
async fn p1_sign_in_vs_argon2(node: &Node, users: &[String], cores: usize, opts: &Options) -> anyhow::Result<(Row, f64)> {
    let (client, base, users) = (load::client(), node.base.clone(), Arc::new(users.to_vec()));
    let sign_in = move |w: usize, i: u64| {
        let login_name = users[(w * 7919 + i as usize) % users.len()].clone();
        client
            .post(format!("{base}/api/v1/sign-in"))
            .json(&json!({"login_name": login_name, "password": accounts::PASSWORD}))
            .send()
    };
    let workers = 4 * cores;
    let _ = load::closed_loop(workers, opts.secs(1), sign_in.clone()).await;
    let mut rounds = Vec::new();
    for _ in 0..ROUNDS {
        let raw = raw_argon2_per_s(cores, opts.secs(4)).await?;
        let out = load::closed_loop(workers, opts.secs(6), sign_in.clone()).await;
        rounds.push((out.rate(200) / raw, out.rate(200), raw, out.latencies_us.len() as u64 - out.count(200) + out.failures));
    }
    rounds.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (ratio, rate, raw, odd) = rounds[ROUNDS / 2];
    let figure = format!(
        "{rate:.1} sign-ins/s ({workers} clients; {odd} answers not 200) vs {raw:.1} raw hashes/s on {cores} threads: ratio **{ratio:.2}** (median of {ROUNDS} rounds; {})",
        spread(rounds.iter().map(|r| r.0))
    );
    Ok((Row::new("P1", "password sign-ins/s vs raw Argon2id/s", figure, "ratio ≥ 0.9", ratio >= 0.9), rate))
}

/// Each ratio is measured in this many rounds, its two sides back to back in each, and the median
/// round is reported: a single round on two shared cores moves by ±10 % from run to run.
const ROUNDS: usize = 3;

/// "from 0.88 to 0.92": the lowest and highest of the rounds.
fn spread(values: impl Iterator<Item = f64>) -> String {
    let v: Vec<f64> = values.collect();
    let (lo, hi) = (v.iter().cloned().fold(f64::INFINITY, f64::min), v.iter().cloned().fold(f64::NEG_INFINITY, f64::max));
    format!("rounds from {lo:.2} to {hi:.2}")
}

/// The best the cores can do: each thread hashes in a loop into memory it allocated once (as the
/// server's pool does), with a fresh salt per hash.
async fn raw_argon2_per_s(threads: usize, period: Duration) -> anyhow::Result<f64> {
    tokio::task::spawn_blocking(move || {
        let params = argon2::Params::new(Argon2::PRODUCTION.memory_kib, Argon2::PRODUCTION.iterations, 1, None).expect("valid parameters");
        let started = std::time::Instant::now();
        let hashes: u64 = std::thread::scope(|s| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    s.spawn(|| {
                        let argon2 = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params.clone());
                        let mut memory = vec![argon2::Block::default(); params.block_count()];
                        let mut out = [0u8; 32];
                        let mut n = 0u64;
                        while started.elapsed() < period {
                            let mut salt = [0u8; 16];
                            latchkey_core::random::fill(&mut salt);
                            argon2.hash_password_into_with_memory(accounts::PASSWORD.as_bytes(), &salt, &mut out, &mut memory).expect("a hash");
                            n += 1;
                        }
                        n
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().expect("a hashing thread")).sum()
        });
        hashes as f64 / started.elapsed().as_secs_f64()
    })
    .await
    .context("the raw Argon2id measurement")
}

/// One session per client, so every `/me` is a different session's lookup.
async fn sessions(node: &Node, users: &[String], n: usize) -> anyhow::Result<Arc<Vec<accounts::Session>>> {
    let client = load::client();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        out.push(accounts::session(&client, &node.base, &users[i % users.len()]).await?);
    }
    Ok(Arc::new(out))
}

fn me_request(node: &Node, sessions: Arc<Vec<accounts::Session>>) -> impl Fn(usize, u64) -> reqwest::RequestBuilder + Clone {
    let (client, base) = (load::client(), node.base.clone());
    move |w, _| client.get(format!("{base}/api/v1/me")).header("cookie", &sessions[w % sessions.len()].cookie)
}

/// P2: the cost of a session check and the user's page of facts, against the cheapest answer the
/// same server gives, at the same concurrency from the same client.
async fn p2_me_vs_healthz(node: &Node, users: &[String], store: &str, opts: &Options) -> anyhow::Result<Row> {
    const WORKERS: usize = 32;
    let sessions = sessions(node, users, WORKERS).await?;
    let me = me_request(node, sessions);
    let (client, base) = (load::client(), node.base.clone());
    let healthz = move |_: usize, _: u64| client.get(format!("{base}/healthz")).send();
    let me_send = move |w: usize, i: u64| me(w, i).send();
    let _ = load::closed_loop(WORKERS, opts.secs(1), healthz.clone()).await;
    let _ = load::closed_loop(WORKERS, opts.secs(1), me_send.clone()).await;
    let mut rounds = Vec::new();
    for _ in 0..ROUNDS {
        let h = load::closed_loop(WORKERS, opts.secs(3), healthz.clone()).await;
        let m = load::closed_loop(WORKERS, opts.secs(3), me_send.clone()).await;
        rounds.push((m.rate(200) / h.rate(200), m, h));
    }
    rounds.sort_by(|a, b| a.0.total_cmp(&b.0));
    let odd: Vec<String> = rounds.iter().filter_map(|r| unexpected(&r.1)).collect();
    let (ratio, m, h) = &rounds[ROUNDS / 2];
    let figure = format!(
        "/me {:.0}/s (p99 {:.1} ms) vs /healthz {:.0}/s (p99 {:.1} ms), {WORKERS} clients: ratio **{ratio:.2}** (median of {ROUNDS} rounds; {}){}",
        m.rate(200),
        m.percentile_ms(99.0),
        h.rate(200),
        h.percentile_ms(99.0),
        spread(rounds.iter().map(|r| r.0)),
        if odd.is_empty() { String::new() } else { format!("; /me {}", odd.join(", ")) }
    );
    let ok = *ratio >= 0.5 && odd.is_empty();
    Ok(Row::new("P2", format!("`GET /api/v1/me` vs `GET /healthz`, {store}"), figure, "ratio ≥ 0.5", ok))
}

/// Anything but 200s: a count per status and transport failures.
fn unexpected(out: &Outcome) -> Option<String> {
    let odd: Vec<String> = out.statuses.iter().filter(|(s, _)| **s != 200).map(|(s, n)| format!("{n}× {s}")).collect();
    let mut parts = odd;
    if out.failures > 0 {
        parts.push(format!("{} transport failures", out.failures));
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

async fn p2_postgres(bin: &Path, opts: &Options) -> anyhow::Result<Vec<Row>> {
    let what = "`GET /api/v1/me` vs `GET /healthz`, PostgreSQL";
    let Some(url) = latchkey_store::testing::fresh_postgres_url("bench").await else {
        return Ok(vec![Row::not_measured("P2", what, "ratio ≥ 0.5", "PostgreSQL unreachable")]);
    };
    let dir = tempfile::tempdir()?;
    let rows = {
        let (pg, _) = Node::start(bin, dir.path(), Some(&url), Argon2::PRODUCTION).await?;
        let users = accounts::active_users(&pg, 32, false).await?;
        let me = p2_me_vs_healthz(&pg, &users, "PostgreSQL", opts).await?;
        let sessions = sessions(&pg, &users, 32).await?;
        vec![me, postgres_direct(&url, &sessions, opts).await?]
    };
    drop_database(&url);
    Ok(rows)
}

/// What PostgreSQL itself answers on this machine, with no HTTP and no Latchkey: `/me`'s two
/// statements (the session with its account, then the account's overview) put straight to it
/// from 32 connections of the benchmark's own, one session each; and the bare round trip,
/// `SELECT 1`, for scale.
async fn postgres_direct(url: &str, sessions: &[accounts::Session], opts: &Options) -> anyhow::Result<Row> {
    const CLIENTS: usize = 32;
    let (session_sql, overview_sql) = latchkey_store::testing::me_statements();
    let hashes: Vec<String> = sessions
        .iter()
        .map(|s| latchkey_core::secret::Token::from_client(s.cookie.split_once('=').map(|(_, v)| v).unwrap_or_default()).hash().as_str().to_owned())
        .collect();
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(CLIENTS as u32).connect(url).await?;
    let period = opts.secs(5);
    let run = |me: bool| {
        let (pool, hashes, session_sql) = (pool.clone(), hashes.clone(), session_sql.clone());
        async move {
            let started = std::time::Instant::now();
            let mut tasks = tokio::task::JoinSet::new();
            for c in 0..CLIENTS {
                let mut conn = pool.acquire().await?;
                let (hash, session_sql) = (hashes[c % hashes.len()].clone(), session_sql.clone());
                tasks.spawn(async move {
                    let mut n = 0u64;
                    while started.elapsed() < period {
                        if me {
                            let row = sqlx::query(&session_sql).bind(&hash).fetch_one(&mut *conn).await?;
                            let user_id: i64 = sqlx::Row::try_get(&row, "id")?;
                            sqlx::query(overview_sql).bind(user_id).fetch_all(&mut *conn).await?;
                        } else {
                            sqlx::query("SELECT 1").fetch_one(&mut *conn).await?;
                        }
                        n += 1;
                    }
                    Ok::<u64, sqlx::Error>(n)
                });
            }
            let mut total = 0;
            while let Some(n) = tasks.join_next().await {
                total += n??;
            }
            anyhow::Ok(total as f64 / started.elapsed().as_secs_f64())
        }
    };
    let me = run(true).await?;
    let bare = run(false).await?;
    let mut row = Row::new(
        "P2",
        "PostgreSQL answering `/me`'s two statements itself, from the benchmark",
        format!("{me:.0} pairs/s, {CLIENTS} clients on their own connections (bare `SELECT 1` round trips: {bare:.0}/s)"),
        "—",
        true,
    );
    row.verdict = report::Verdict::Context;
    Ok(row)
}

/// Best effort: the next test run's setup drops what is left of `lk_test_*` anyway.
fn drop_database(url: &str) {
    if let Some((admin, name)) = url.rsplit_once('/') {
        let _ = std::process::Command::new("psql")
            .args([&format!("{admin}/test"), "-qc", &format!("DROP DATABASE IF EXISTS \"{name}\"")])
            .output();
    }
}

/// P3: `/me` latency with nothing else going on, then while sign-ins arrive at twice the rate the
/// server can hash; what happens to the excess sign-ins, and the process's peak memory.
async fn p3_flood(node: &Node, users: &[String], capacity: f64, opts: &Options) -> anyhow::Result<Vec<Row>> {
    const WORKERS: usize = 4;
    let sessions = sessions(node, users, WORKERS).await?;
    let me = me_request(node, sessions);
    let me_send = move |w: usize, i: u64| me(w, i).send();
    let rate = 2.0 * capacity;
    let (client, base, names) = (load::client(), node.base.clone(), Arc::new(users.to_vec()));
    let sign_in = move |i: u64| {
        client
            .post(format!("{base}/api/v1/sign-in"))
            .json(&json!({"login_name": names[i as usize % names.len()], "password": accounts::PASSWORD}))
            .send()
    };
    let period = opts.secs(6);
    let mut rounds = Vec::new();
    for _ in 0..ROUNDS {
        let idle = load::closed_loop(WORKERS, opts.secs(4), me_send.clone()).await;
        let (flood, during) = tokio::join!(load::open_loop(rate, period, sign_in.clone()), load::closed_loop(WORKERS, period, me_send.clone()));
        rounds.push((during.percentile_ms(99.0) / idle.percentile_ms(99.0), idle, during, flood));
    }
    let (_, peak_kib) = node.memory_kib()?;
    let me_5xx: u64 = rounds.iter().flat_map(|r| r.2.statuses.iter()).filter(|(s, _)| **s >= 500).map(|(_, n)| n).sum();
    let me_failures: u64 = rounds.iter().map(|r| r.2.failures).sum();
    let refusals_ok = rounds.iter().all(|r| r.3.busy() > 0 && r.3.busy_without_retry_after == 0 && r.3.server_errors() == 0 && r.3.failures == 0);
    let spread = spread(rounds.iter().map(|r| r.0));
    rounds.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (ratio, idle, during, flood) = &rounds[ROUNDS / 2];

    let (idle99, flood99) = (idle.percentile_ms(99.0), during.percentile_ms(99.0));
    let latency = Row::new(
        "P3",
        "`/me` p50 / p99 idle and during a sign-in flood",
        format!(
            "idle {:.1} / {idle99:.1} ms; flood {:.1} / {flood99:.1} ms (**{ratio:.2}×** idle p99; median of {ROUNDS} rounds, {spread}); /me 5xx in all rounds: {me_5xx}",
            idle.percentile_ms(50.0),
            during.percentile_ms(50.0),
        ),
        "p99 under flood ≤ 3 × idle p99, zero 5xx",
        *ratio <= 3.0 && me_5xx == 0 && me_failures == 0,
    );
    let busy_fast = load::percentile_ms(&flood.busy_latencies_us, 99.0);
    let excess = Row::new(
        "P3",
        format!("sign-in flood at {rate:.0}/s (2 × capacity) for {:.0} s (the median round)", period.as_secs_f64()),
        format!(
            "{} signed in ({:.1}/s), {} answered 503/429 (p99 {busy_fast:.1} ms, {} without Retry-After), {} other 5xx, {} transport failures",
            flood.count(200),
            flood.rate(200),
            flood.busy(),
            flood.busy_without_retry_after,
            flood.server_errors(),
            flood.failures
        ),
        "excess gets a fast 503/429 with Retry-After; no other 5xx",
        refusals_ok,
    );
    let memory = Row::new("P3", "peak resident memory (whole run so far)", format!("{:.1} MB", peak_kib as f64 / 1024.0), "< 200 MB", peak_kib < 200 * 1024);
    Ok(vec![latency, excess, memory])
}

/// P4: from spawning the process to the first `/readyz` 200 on a fresh data dir (migrations
/// included), and the resident memory once it has settled; the median of five starts.
async fn p4_start_and_memory(bin: &Path, opts: &Options) -> anyhow::Result<Vec<Row>> {
    let mut starts = Vec::new();
    let mut rss = Vec::new();
    for _ in 0..5 {
        let dir = tempfile::tempdir()?;
        let (node, ready) = Node::start(bin, dir.path(), None, Argon2::PRODUCTION).await?;
        tokio::time::sleep(opts.secs(1)).await;
        starts.push(ready.as_secs_f64());
        rss.push(node.memory_kib()?.0 as f64 / 1024.0);
    }
    let (start, mem) = (median(&mut starts), median(&mut rss));
    Ok(vec![
        Row::new("P4", "idle resident memory after start", format!("{mem:.1} MB (median of 5)"), "≤ 30 MB", mem <= 30.0),
        Row::new(
            "P4",
            "process start to `/readyz` 200 (fresh data dir)",
            format!("{:.0} ms (median of 5; max {:.0} ms)", start * 1000.0, starts.iter().cloned().fold(0.0, f64::max) * 1000.0),
            "≤ 0.5 s",
            start <= 0.5,
        ),
    ])
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// P5: each account has an authenticator app and two sign-in flows waiting for their second
/// factor; every flow is completed once, as fast as the server answers, first with the app's
/// code, then with a recovery code. On the embedded default (SQLite, the development outbox);
/// then the recovery codes again with the email going over SMTP, as in production.
async fn p5_second_factor(bin: &Path, opts: &Options) -> anyhow::Result<Vec<Row>> {
    let n = opts.flows.unwrap_or(if opts.quick { 300 } else { 5000 });
    let dir = tempfile::tempdir()?;
    let (node, _) = Node::start(bin, dir.path(), None, Argon2::CHEAP).await?;
    let (totp, recovery) = p5_run(&node, n, &|| 0).await?;
    let mut rows = vec![p5_row("TOTP codes", &totp, n), p5_row("recovery codes", &recovery, n)];
    drop(node);

    let n = n.min(500);
    let sink = smtp_sink::SmtpSink::start().await?;
    let smtp = [
        ("LATCHKEY_SMTP__HOST", "127.0.0.1".to_owned()),
        ("LATCHKEY_SMTP__PORT", sink.port.to_string()),
        ("LATCHKEY_SMTP__SECURITY", "none".to_owned()),
        ("LATCHKEY_SMTP__FROM", format!("Bench <no-reply@{}>", accounts::DOMAIN)),
    ];
    let dir = tempfile::tempdir()?;
    let (node, _) = Node::start_with(bin, dir.path(), None, Argon2::CHEAP, &smtp).await?;
    let (_, recovery) = p5_run(&node, n, &|| sink.received()).await?;
    let emails = recovery.emails;
    let mut row = p5_row("recovery codes", &recovery, n);
    row.what = "second-factor verifications/s, recovery codes, SQLite, the security email over SMTP (a relay on loopback)".into();
    row.figure.push_str(&format!("; {emails} security emails received"));
    row.target = "—".into();
    row.verdict = report::Verdict::Context;
    rows.push(row);
    Ok(rows)
}

/// Prepares `n` accounts with an authenticator app and two waiting flows each, then completes
/// every flow once: the TOTP ones, then the recovery-code ones.
/// `emails` counts the emails received so far, where the benchmark receives them.
async fn p5_run(node: &Node, n: usize, emails: &(dyn Fn() -> u64 + Sync)) -> anyhow::Result<(Measured, Measured)> {
    const WORKERS: usize = 16;
    let users = accounts::active_users(node, n, true).await?;
    let (client, base) = (load::client(), node.base.clone());
    let prepared = load::for_each(n, 8, move |i| {
        let (client, base, login_name) = (client.clone(), base.clone(), users[i].clone());
        async move {
            let session = accounts::session(&client, &base, &login_name).await?;
            let (secret, codes) = accounts::enrol_totp(&client, &base, &session).await?;
            let totp_flow = accounts::flow(&client, &base, &login_name).await?;
            let recovery_flow = accounts::flow(&client, &base, &login_name).await?;
            Ok((secret, codes, totp_flow, recovery_flow))
        }
    })
    .await?;
    let prepared = Arc::new(prepared);

    eprintln!("P5: {n} flows of each kind prepared; measuring");
    // The preparation's writes settle first (the store checkpoints them into the database file).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (client, base, p) = (load::client(), node.base.clone(), prepared.clone());
    let cpu = CpuWatch::start(node)?;
    // The code of the next step: the step of the enrolment's own code is spent, and the server
    // accepts one step either side of now.
    let totp = load::drain(n, WORKERS, move |i| {
        let code = code_now(&p[i].0, time::OffsetDateTime::now_utc() + time::Duration::seconds(30)).unwrap_or_default();
        client.post(format!("{base}/api/v1/sign-in/{}/verify", p[i].2)).json(&json!({"method": "totp", "code": code})).send()
    })
    .await;
    let totp = Measured { cpu: cpu.per_request(node, n)?, outcome: totp, emails: 0 };

    tokio::time::sleep(Duration::from_secs(1)).await;
    let (client, base, p) = (load::client(), node.base.clone(), prepared.clone());
    let (cpu, emails_before) = (CpuWatch::start(node)?, emails());
    let recovery = load::drain(n, WORKERS, move |i| {
        client
            .post(format!("{base}/api/v1/sign-in/{}/verify", p[i].3))
            .json(&json!({"method": "recovery_code", "code": p[i].1[0]}))
            .send()
    })
    .await;
    let recovery = Measured { cpu: cpu.per_request(node, n)?, outcome: recovery, emails: emails() - emails_before };
    Ok((totp, recovery))
}

/// A measured drain and the CPU it took.
struct Measured {
    outcome: Outcome,
    cpu: CpuPerRequest,
    /// Emails received during the drain, where the benchmark receives them.
    emails: u64,
}

/// CPU used over a measured period by the server and by this benchmark (the load generator),
/// which share the machine's cores.
struct CpuWatch {
    server: f64,
    load: f64,
}

/// Per request: the server's CPU, and the load generator's, in microseconds.
#[derive(Clone, Copy)]
struct CpuPerRequest {
    server_us: f64,
    load_us: f64,
}

impl CpuWatch {
    fn start(node: &Node) -> anyhow::Result<Self> {
        Ok(Self { server: node.cpu_secs()?, load: node::cpu_secs_of("/proc/self/stat")? })
    }

    fn per_request(&self, node: &Node, requests: usize) -> anyhow::Result<CpuPerRequest> {
        let per = |secs: f64| secs * 1e6 / requests.max(1) as f64;
        Ok(CpuPerRequest { server_us: per(node.cpu_secs()? - self.server), load_us: per(node::cpu_secs_of("/proc/self/stat")? - self.load) })
    }
}

fn p5_row(what: &str, m: &Measured, n: usize) -> Row {
    let (out, cpu) = (&m.outcome, m.cpu);
    let rate = out.rate(200);
    let all = out.count(200) == n as u64;
    Row::new(
        "P5",
        format!("second-factor verifications/s, {what}, SQLite"),
        format!(
            "**{rate:.0}/s** ({} of {n} signed in, 16 clients; p50 {:.1} ms, p99 {:.1} ms); CPU per verification: server {:.0} µs, load generator {:.0} µs{}",
            out.count(200),
            out.percentile_ms(50.0),
            out.percentile_ms(99.0),
            cpu.server_us,
            cpu.load_us,
            unexpected(out).map(|u| format!("; {u}")).unwrap_or_default()
        ),
        "≥ 5,000/s",
        rate >= 5000.0 && all,
    )
}
