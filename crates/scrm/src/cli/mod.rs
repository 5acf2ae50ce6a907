//! The `scrm` command line: one binary, a subcommand per way to run it.

mod bench;
mod callback;
mod chaos;
mod demo;

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::auth::{Role, password, users};
use crate::config::Config;
use crate::startup::{self, Application, DEFAULT_TENANT};

#[derive(Parser)]
#[command(
    name = "scrm",
    version,
    about = "scrm: a social CRM for WeCom (企业微信)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP API and background workers.
    Serve(ServeArgs),
    /// Apply database migrations and exit.
    Migrate,
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Print the effective configuration, secrets masked.
    Config,
    /// A first run: the WeCom simulator with a small company, and scrm on SQLite using it.
    Demo(demo::DemoArgs),
    /// Run the WeCom simulator alone (for tests, benchmarks and development).
    Sim(Box<scrm_wecom_sim::SimConfig>),
    /// WeCom callback tools.
    #[command(subcommand)]
    Callback(CallbackCommand),
    /// Benchmarks (figures in BENCHMARKS.md).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// The chaos harness: API and worker processes on one database, workers killed, WeCom
    /// faults, the database cut; then every message checked (figures in BENCHMARKS.md).
    Chaos(Box<chaos::ChaosCmd>),
    /// Sync from WeCom now, with a progress bar (`scrm sync --type customer`).
    Sync(crate::integration::cli::SyncArgs),
}

#[derive(Subcommand)]
enum CallbackCommand {
    /// Verify and decrypt a callback: prints the plaintext, or which check failed.
    Decrypt(callback::DecryptArgs),
}

#[derive(Args)]
struct ServeArgs {
    /// Which parts to run: all (default), api or worker. Overrides SCRM_ROLE.
    #[arg(long)]
    role: Option<String>,
    /// Port to bind. Overrides PORT.
    #[arg(long)]
    port: Option<u16>,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user. `--admin` creates `admin` with the admin role.
    Create {
        /// User name (default `admin` with --admin).
        #[arg(long)]
        username: Option<String>,
        /// Make the user an admin (and name it `admin` unless --username is given).
        #[arg(long)]
        admin: bool,
        /// Role: admin, operator or viewer.
        #[arg(long, default_value = "operator")]
        role: String,
        /// Display name.
        #[arg(long)]
        name: Option<String>,
        /// Tenant (company) name; created if missing.
        #[arg(long, default_value = DEFAULT_TENANT)]
        tenant: String,
        /// Password; when absent, SCRM_ADMIN_PASSWORD for --admin, else a random one is printed.
        #[arg(long, env = "SCRM_NEW_USER_PASSWORD", hide_env_values = true)]
        password: Option<String>,
    },
    /// List users of every tenant.
    List,
    /// Set a new password (printed when generated) and sign the user out.
    ResetPassword {
        #[arg(long)]
        username: String,
        #[arg(long, env = "SCRM_NEW_USER_PASSWORD", hide_env_values = true)]
        password: Option<String>,
    },
}

/// Parse the command line and run it.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("scrm: {e}");
            return ExitCode::from(2);
        }
    };
    crate::telemetry::init(&config);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("scrm: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scrm: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: Command, mut config: Config) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => {
            if let Some(role) = args.role {
                let mut env = std::collections::BTreeMap::new();
                env.insert("SCRM_ROLE".to_string(), role);
                config.role = Config::from_source(&env)?.role;
            }
            if let Some(port) = args.port {
                config.port = port;
            }
            let app = Application::build(config).await?;
            app.run_until(startup::shutdown_signal()).await
        }
        Command::Migrate => {
            let db = startup::connect_and_migrate(&config).await?;
            println!("migrations applied ({})", db.backend());
            db.close().await;
            Ok(())
        }
        Command::Config => {
            for (k, v) in config.describe() {
                println!("{k:<26} {v}");
            }
            Ok(())
        }
        Command::User(cmd) => user_command(cmd, &config).await,
        Command::Demo(args) => demo::run(args, config).await,
        Command::Sim(sim_config) => {
            let listener = tokio::net::TcpListener::bind(&sim_config.listen)
                .await
                .with_context(|| format!("binding {}", sim_config.listen))?;
            println!("WeCom simulator at http://{}", listener.local_addr()?);
            scrm_wecom_sim::Simulator::serve(listener, *sim_config, startup::shutdown_signal())
                .await
        }
        Command::Sync(args) => crate::integration::cli::run(args, config).await,
        Command::Bench(cmd) => bench::run(cmd, config).await,
        Command::Chaos(cmd) => chaos::run(*cmd, config).await,
        Command::Callback(CallbackCommand::Decrypt(args)) => {
            let plaintext = callback::decrypt(&args)?;
            println!("{plaintext}");
            Ok(())
        }
    }
}

fn random_password() -> String {
    crate::auth::tokens::generate()[5..21].to_string()
}

async fn user_command(cmd: UserCommand, config: &Config) -> anyhow::Result<()> {
    let db = startup::connect_and_migrate(config).await?;
    match cmd {
        UserCommand::Create {
            username,
            admin,
            role,
            name,
            tenant,
            password,
        } => {
            let role = if admin {
                Role::Admin
            } else {
                Role::parse(&role).context("--role must be admin, operator or viewer")?
            };
            let username =
                username.unwrap_or_else(|| if admin { "admin".into() } else { String::new() });
            anyhow::ensure!(!username.is_empty(), "--username is required (or --admin)");
            let (password, generated) = match password.or_else(|| {
                admin
                    .then(|| {
                        config
                            .admin_password
                            .as_ref()
                            .map(|p| p.expose().to_string())
                    })
                    .flatten()
            }) {
                Some(p) => (p, false),
                None => (random_password(), true),
            };
            if let Some(why) = password::check_strength(&password) {
                anyhow::bail!("password {why}");
            }
            let tenant_id = users::ensure_tenant(&db, &tenant).await?;
            let hash = password::hash(&password)?;
            let mut tx = db.begin().await?;
            let id = users::create(
                &mut tx,
                tenant_id,
                &username,
                name.as_deref().unwrap_or(&username),
                &hash,
                role,
            )
            .await
            .map_err(|e| {
                if e.is_conflict() {
                    anyhow::anyhow!("user {username:?} already exists")
                } else {
                    e.into()
                }
            })?;
            crate::audit::record_raw(
                &mut tx,
                tenant_id,
                None,
                "user.create",
                "user",
                &id.to_string(),
                serde_json::json!({"username": username, "via": "cli"}),
                None,
            )
            .await?;
            tx.commit().await?;
            println!(
                "created user {username} (id {id}, role {}, tenant {tenant})",
                role.as_str()
            );
            if generated {
                println!("password: {password}");
            }
        }
        UserCommand::List => {
            println!(
                "{:<6} {:<8} {:<24} {:<10} {:<7} display name",
                "id", "tenant", "username", "role", "status"
            );
            for u in users::list_all(&db).await? {
                println!(
                    "{:<6} {:<8} {:<24} {:<10} {:<7} {}",
                    u.id,
                    u.tenant_id,
                    u.username,
                    u.role,
                    if u.status == 1 { "active" } else { "disabled" },
                    u.display_name
                );
            }
        }
        UserCommand::ResetPassword { username, password } => {
            let (user, _) = users::find_for_login(&db, &username)
                .await?
                .with_context(|| format!("no user {username:?}"))?;
            let (password, generated) = match password {
                Some(p) => (p, false),
                None => (random_password(), true),
            };
            if let Some(why) = password::check_strength(&password) {
                anyhow::bail!("password {why}");
            }
            let hash = password::hash(&password)?;
            let mut tx = db.begin().await?;
            users::set_password(&mut tx, user.tenant_id, user.id, &hash).await?;
            crate::audit::record_raw(
                &mut tx,
                user.tenant_id,
                None,
                "user.reset_password",
                "user",
                &user.id.to_string(),
                serde_json::json!({"via": "cli"}),
                None,
            )
            .await?;
            tx.commit().await?;
            println!("password of {username} reset; their sessions are signed out");
            if generated {
                println!("password: {password}");
            }
        }
    }
    db.close().await;
    Ok(())
}
