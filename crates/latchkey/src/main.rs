//! The `latchkey` binary: `serve`, `migrate`, and the operator's commands. Every subcommand reads
//! the same configuration (`--config FILE`, then `LATCHKEY_*` variables), so the CLI can run beside
//! a running server on the same SQLite file.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use latchkey_core::{Role, SystemClock};
use latchkey_core::flows::sso::Provider;
use latchkey_server::app::{rfc3339, Actor, RequestContext};
use latchkey_server::Config;

#[derive(Parser)]
#[command(name = "latchkey", version, about = "Account security for the business phone-system portal")]
struct Cli {
    /// TOML configuration file; `LATCHKEY_*` environment variables override it.
    #[arg(long, global = true, env = "LATCHKEY_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        /// On an empty store, create a demo company with an office manager and print the
        /// Complete Setup link.
        #[arg(long)]
        demo: bool,
    },
    /// Apply the store's migrations and exit.
    Migrate,
    /// Companies (organisations).
    #[command(subcommand)]
    Company(CompanyCommand),
    /// Users of a company.
    #[command(subcommand)]
    User(UserCommand),
    /// API tokens for the operator's automation (`Authorization: Bearer lk_…`).
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Make a token and print its secret, once. Without `--company` it reaches every company.
    Create {
        /// 1 to 64 printable characters, to tell tokens apart (e.g. "provisioning").
        #[arg(long)]
        name: String,
        /// Limit the token to this company's domain, with an office manager's rights there.
        #[arg(long)]
        company: Option<String>,
    },
    /// Every token, live and revoked: id, name, scope, created, last used, revoked.
    List,
    /// Revoke a token by its id; it stops working at once.
    Revoke { id: i64 },
}

#[derive(Subcommand)]
enum CompanyCommand {
    /// Create a company; its domain is used in login names (101@organization.com).
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        domain: String,
    },
    List,
    /// Turn a pilot feature on for a company (`sso`: both providers unless `--provider` names some).
    Enable(FeatureSwitch),
    /// Turn a pilot feature off for a company (`sso` with `--provider`: just that provider).
    Disable(FeatureSwitch),
}

// What `company enable` and `company disable` take: which feature of which company.
#[derive(Args)]
struct FeatureSwitch {
    #[arg(long)]
    domain: String,
    #[arg(long, value_parser = ["two-factor", "sso"])]
    feature: String,
    /// With `--feature sso`: `google` or `microsoft`; repeat for both.
    #[arg(long, value_parser = ["google", "microsoft"])]
    provider: Vec<String>,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user and send the welcome email; prints the login name.
    Create {
        /// The company's domain.
        #[arg(long)]
        company: String,
        #[arg(long)]
        extension: String,
        /// The designated email: welcome, reset and forgot-login-name emails go there.
        #[arg(long)]
        email: String,
        #[arg(long, default_value = "user", value_parser = ["user", "supervisor", "office-manager"])]
        role: String,
    },
    /// Send a new welcome email; the old link stops working.
    ResendWelcome {
        #[arg(long)]
        company: String,
        #[arg(long)]
        extension: String,
    },
    /// Remove a user's two-factor methods and recovery codes; the user enrols again.
    #[command(name = "reset-2fa")]
    ResetTwoFactor {
        #[arg(long)]
        company: String,
        #[arg(long)]
        extension: String,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("latchkey: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    init_logging(&config, matches!(cli.command, Command::Serve { .. }));
    match run(cli.command, config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("latchkey: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_logging(config: &Config, serving: bool) {
    let default = if serving { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("LATCHKEY_LOG").unwrap_or_else(|_| default.into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if config.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    let ctx = RequestContext { client_ip: None, user_agent: Some("latchkey-cli".into()) };
    match command {
        Command::Serve { demo } => serve(config, demo).await,
        Command::Migrate => {
            latchkey_server::open(config, Arc::new(SystemClock)).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Company(CompanyCommand::Create { name, domain }) => {
            let app = latchkey_server::open(config, Arc::new(SystemClock)).await?;
            let c = app.create_company(&name, &domain).await.map_err(api_error)?;
            println!("created company {} ({})", c.name, c.domain);
            Ok(())
        }
        Command::Company(CompanyCommand::List) => {
            let app = latchkey_server::open(config, Arc::new(SystemClock)).await?;
            for c in app.store.list_companies().await? {
                println!("{}\t{}", c.domain, c.name);
            }
            Ok(())
        }
        Command::User(UserCommand::ResetTwoFactor { company, extension }) => {
            let app = latchkey_server::open(config, Arc::new(SystemClock)).await?;
            let user = app.reset_two_factor(&company, &extension, Actor::Operator, &ctx).await.map_err(api_error)?;
            println!("two-factor authentication reset for {}", user.login_name);
            Ok(())
        }
        Command::Token(command) => token_command(config, command, &ctx).await,
        Command::Company(CompanyCommand::Enable(s)) => switch_feature(config, &s, true, &ctx).await,
        Command::Company(CompanyCommand::Disable(s)) => switch_feature(config, &s, false, &ctx).await,
        Command::User(UserCommand::Create { company, extension, email, role }) => {
            let role: Role = role.parse().map_err(|e: latchkey_core::account::InvalidName| anyhow::anyhow!(e.0))?;
            let outbox = config.smtp.is_none();
            let app = latchkey_server::open(config, Arc::new(SystemClock)).await?;
            let created = app.create_user(&company, &extension, &email, role, Actor::Operator, &ctx).await.map_err(api_error)?;
            report_welcome(&created, outbox);
            Ok(())
        }
        Command::User(UserCommand::ResendWelcome { company, extension }) => {
            let outbox = config.smtp.is_none();
            let app = latchkey_server::open(config, Arc::new(SystemClock)).await?;
            let created = app.resend_welcome(&company, &extension, Actor::Operator, &ctx).await.map_err(api_error)?;
            report_welcome(&created, outbox);
            Ok(())
        }
    }
}

/// The operator's pilot switches; clap checks the names.
async fn switch_feature(config: Config, switch: &FeatureSwitch, on: bool, ctx: &RequestContext) -> anyhow::Result<()> {
    let FeatureSwitch { domain, feature, provider: providers } = switch;
    let app = latchkey_server::open(config, Arc::new(SystemClock)).await?;
    let state = if on { "enabled" } else { "disabled" };
    if feature == "sso" {
        let providers: Vec<Provider> = providers.iter().filter_map(|p| Provider::parse(p)).collect();
        let settings = app.set_sso_feature(domain, on, &providers, Actor::Operator, ctx).await.map_err(api_error)?;
        let list = if settings.providers.is_empty() { "none".to_owned() } else { settings.providers.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", ") };
        println!("sso {} for {domain}; providers: {list}", if settings.enabled { "enabled" } else { "disabled" });
    } else {
        if !providers.is_empty() {
            anyhow::bail!("--provider goes with --feature sso");
        }
        app.set_two_factor_feature(domain, on, Actor::Operator, ctx).await.map_err(api_error)?;
        println!("{feature} {state} for {domain}");
    }
    Ok(())
}

async fn token_command(config: Config, command: TokenCommand, ctx: &RequestContext) -> anyhow::Result<()> {
    let app = latchkey_server::open(config, Arc::new(SystemClock)).await?;
    match command {
        TokenCommand::Create { name, company } => {
            let created = app.create_api_token(&name, company.as_deref(), Actor::Operator, ctx).await.map_err(api_error)?;
            // The secret alone on stdout, so a script can take it: `SECRET=$(latchkey token create …)`.
            println!("{}", created.secret);
            eprintln!("API token {} \"{}\" created, {}.", created.token.id, created.token.name, scope(&created.token));
            eprintln!("The secret above is shown only once: Latchkey keeps only its hash. Send it as `Authorization: Bearer <secret>`.");
        }
        TokenCommand::List => {
            println!("id\tname\tscope\tcreated\tlast used\trevoked");
            let time = |t: Option<_>| t.map_or_else(|| "-".to_owned(), rfc3339);
            for t in app.api_tokens().await.map_err(api_error)? {
                println!("{}\t{}\t{}\t{}\t{}\t{}", t.id, t.name, scope(&t), rfc3339(t.created_at), time(t.last_used_at), time(t.revoked_at));
            }
        }
        TokenCommand::Revoke { id } => {
            let token = app.revoke_api_token(id, Actor::Operator, ctx).await.map_err(api_error)?;
            println!("API token {} \"{}\" revoked at {}", token.id, token.name, token.revoked_at.map_or_else(String::new, rfc3339));
        }
    }
    Ok(())
}

fn scope(t: &latchkey_store::ApiToken) -> String {
    match &t.company_domain {
        Some(domain) => format!("company {domain}"),
        None => "operator (every company)".to_owned(),
    }
}

/// Prints the login name; the link only in development (outbox) mode, where it sits in a file
/// beside the database anyway. With SMTP the link goes to the user alone.
fn report_welcome(created: &latchkey_server::app::CreatedUser, outbox: bool) {
    println!("{}", created.user.login_name);
    if !created.email_sent {
        eprintln!("warning: the welcome email could not be sent; see the log and run `latchkey user resend-welcome`");
    } else if outbox {
        eprintln!("welcome email written to the outbox; Complete Setup link: {}", created.complete_setup_url);
    } else {
        eprintln!("welcome email sent to {}", created.user.designated_email);
    }
}

/// The API's sentence, or where it names fields, just what is wrong with each: at a terminal the
/// API's "correct the fields below" has no fields below.
fn api_error(e: latchkey_server::app::AppError) -> anyhow::Error {
    let fields: Vec<String> = e.fields.fields().map(|(f, m)| format!("{f}: {}", m.join(" "))).collect();
    if fields.is_empty() {
        anyhow::anyhow!("{}", e.message)
    } else {
        anyhow::anyhow!("{}", fields.join("; "))
    }
}

async fn serve(config: Config, demo: bool) -> anyhow::Result<()> {
    let shutdown = async {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => return std::mem::drop(ctrl_c.await),
            };
            tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
    };
    let server = latchkey_server::start(config, Arc::new(SystemClock), shutdown).await?;
    tracing::info!(addr = %server.addr, store = server.app.store.backend(), "latchkey listening");
    if demo {
        create_demo(&server.app).await?;
    }
    server.handle.await.context("server task")?;
    Ok(())
}

async fn create_demo(app: &latchkey_server::Latchkey) -> anyhow::Result<()> {
    if !app.store.list_companies().await?.is_empty() {
        println!("demo: the store already has companies; not creating the demo company");
        return Ok(());
    }
    let ctx = RequestContext::default();
    app.create_company("Demo Company", "demo.example").await.map_err(api_error)?;
    let om = app
        .create_user("demo.example", "100", "office.manager@demo.example", Role::OfficeManager, Actor::Operator, &ctx)
        .await
        .map_err(api_error)?;
    println!();
    println!("  Demo company created: Demo Company (demo.example)");
    println!("  Office manager login name: {}", om.user.login_name);
    println!("  Open the welcome email's Complete Setup link (valid 24 hours):");
    println!();
    println!("    {}", om.complete_setup_url);
    println!();
    Ok(())
}
