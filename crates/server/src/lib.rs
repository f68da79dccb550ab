//! Latchkey's HTTP layer: server-rendered pages and the JSON API over the same services, the
//! mailer, and the bounded pool that hashes passwords.
//!
//! Layers, outside in: `web` (routes, cookies, CSRF, pages, API) → `app` (the services, one
//! method per step of a flow) → `latchkey_core` (rules and state machines) and
//! `latchkey_store` (SQL). `mail` and `hashing` are the adapters `app` uses.

// Page handlers answer a refusal with a whole rendered page (`Err(Response)`): that is the point.
#![allow(clippy::result_large_err)]

pub mod app;
pub mod config;
pub mod hashing;
pub mod mail;
pub mod oidc;
mod outbox_file;
pub mod sms;
pub mod web;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use anyhow::Context;
use latchkey_core::Clock;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;

pub use app::Latchkey;
pub use config::Config;

/// Opens the store (migrating it), the mailer and the hashing pool: everything but the socket.
/// The CLI uses this too, so every subcommand honours the same configuration.
pub async fn open(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Arc<Latchkey>> {
    std::fs::create_dir_all(&config.data_dir).with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    let store = latchkey_store::open_with(&config.database_url(), &config.pool_settings())
        .await
        .with_context(|| format!("opening the {} store", if config.database_url.is_empty() { "SQLite" } else { "PostgreSQL" }))?;
    store.migrate().await.context("applying migrations")?;
    let mailer: Arc<dyn mail::Mailer> = match &config.smtp {
        Some(smtp) => Arc::new(mail::SmtpMailer::new(smtp).context("configuring SMTP")?),
        None => Arc::new(mail::OutboxMailer::new(config.outbox_dir(), config.mail_from.clone()).context("creating the outbox")?),
    };
    let sms: Arc<dyn sms::SmsGateway> = match &config.sms {
        Some(gateway) => Arc::new(sms::HttpSmsGateway::new(gateway).context("configuring the SMS gateway")?),
        None => Arc::new(sms::OutboxSms::new(config.outbox_dir()).context("creating the SMS outbox")?),
    };
    let hasher = hashing::Hasher::new(&config.argon2, std::time::Duration::from_secs(config.request_timeout_secs)).context("argon2 parameters")?;
    let keyring = keyring(&config)?;
    let relying_parties = oidc::RelyingParties::from_config(&config).context("single sign-on providers")?;
    Ok(Arc::new(Latchkey::new(store, clock, hasher, mailer, sms, keyring, relying_parties, config)))
}

/// The keys that seal TOTP seeds: from the configuration, else made once into the data dir.
fn keyring(config: &Config) -> anyhow::Result<latchkey_core::seal::Keyring> {
    use latchkey_core::seal::{Keyring, SealKey};
    let tf = &config.two_factor;
    let current = if tf.seal_key.is_empty() {
        let path = config.data_dir.join("seal.key");
        match std::fs::read_to_string(&path) {
            Ok(text) => text.trim().to_owned(),
            Err(_) => {
                let key = SealKey::generate("k1").context("generating the seal key")?;
                write_private(&path, &key.expose_config_text()).with_context(|| format!("writing {}", path.display()))?;
                key.expose_config_text()
            }
        }
    } else {
        tf.seal_key.clone()
    };
    Keyring::from_config(&current, &tf.old_seal_keys).context("two_factor.seal_key")
}

/// The CSRF key: from the configuration, else made once and kept in the data dir (mode 0600).
fn secret_key(config: &Config) -> anyhow::Result<Vec<u8>> {
    if !config.secret_key.is_empty() {
        anyhow::ensure!(config.secret_key.len() >= 32, "secret_key must be at least 32 characters");
        return Ok(config.secret_key.as_bytes().to_vec());
    }
    let path = config.data_dir.join("secret.key");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        return Ok(existing.trim().as_bytes().to_vec());
    }
    let key = latchkey_core::secret::Token::generate();
    write_private(&path, key.expose()).with_context(|| format!("writing {}", path.display()))?;
    Ok(key.expose().as_bytes().to_vec())
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    opts.open(path)?.write_all(contents.as_bytes())
}

/// One Prometheus recorder per process (tests start several servers in one process).
fn metrics_handle() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE.get_or_init(|| PrometheusBuilder::new().install_recorder().ok()).clone()
}

pub struct RunningServer {
    pub addr: SocketAddr,
    pub app: Arc<Latchkey>,
    pub handle: tokio::task::JoinHandle<()>,
}

/// Binds `config.listen` (port 0 picks a free one) and serves until the task is dropped or
/// `shutdown` resolves.
pub async fn start(
    config: Config,
    clock: Arc<dyn Clock>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<RunningServer> {
    let listener = TcpListener::bind(config.listen).await.with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    let mut config = config;
    if config.public_url.is_empty() {
        config.public_url = format!("http://{addr}");
    }
    std::fs::create_dir_all(&config.data_dir).with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    let csrf_key = secret_key(&config)?;
    let app = open(config, clock).await?;
    let web = Arc::new(web::Web { app: app.clone(), csrf_key, metrics: metrics_handle() });
    spawn_housekeeping(app.clone());
    let router = web::router(web).into_make_service_with_connect_info::<SocketAddr>();
    let handle = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).with_graceful_shutdown(shutdown).await {
            tracing::error!(error = %e, "server stopped");
        }
    });
    Ok(RunningServer { addr, app, handle })
}

/// Removes sessions past their timeouts every few minutes; correctness never depends on it
/// (every read checks the timeouts), it only keeps the table small. Deletes audit events past
/// their retention too.
fn spawn_housekeeping(app: Arc<Latchkey>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(300));
        loop {
            tick.tick().await;
            let now = app.now();
            let idle = now - app.session_policy.idle_timeout;
            let old = now - app.session_policy.absolute_timeout;
            if let Err(e) = app.store.delete_expired_sessions(idle, old).await {
                tracing::warn!(error = %e, "session housekeeping failed");
            }
            match app.purge_expired_audit().await {
                Ok(0) => {}
                Ok(purged) => tracing::info!(purged, "audit events past their retention deleted"),
                Err(e) => tracing::warn!(error = %e, "audit retention housekeeping failed"),
            }
        }
    });
}
