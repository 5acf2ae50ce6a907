//! `scrm demo`: a newcomer's first run. It starts the WeCom simulator with a small seeded company
//! on the port after scrm's, and scrm itself on the embedded SQLite file (or `DATABASE_URL`),
//! then prints where to go and how to log in. Data is kept between runs; the simulator's company
//! is generated from a fixed seed, so it is the same company every time.

use anyhow::Context;
use clap::Args;

use crate::config::{Config, Secret};
use crate::startup::{self, Application};

/// The admin password a demo uses when `SCRM_ADMIN_PASSWORD` is not set.
pub const DEMO_ADMIN_PASSWORD: &str = "scrm-demo-admin";

#[derive(Args)]
pub struct DemoArgs {
    /// Customers in the simulated company.
    #[arg(long, default_value_t = 200)]
    customers: u32,
    /// Staff members in the simulated company.
    #[arg(long, default_value_t = 12)]
    staff: u32,
    /// Port of the WeCom simulator (default: scrm's port + 1).
    #[arg(long)]
    sim_port: Option<u16>,
}

pub async fn run(args: DemoArgs, mut config: Config) -> anyhow::Result<()> {
    let password_given = config.admin_password.is_some();
    if !password_given {
        config.admin_password = Some(Secret::new(DEMO_ADMIN_PASSWORD));
    }
    let sim_port = args.sim_port.unwrap_or(config.port.saturating_add(1));
    let mut sim_config = scrm_wecom_sim::SimConfig {
        listen: format!("{}:{sim_port}", config.bind),
        ..Default::default()
    };
    sim_config.size.customers = args.customers;
    sim_config.size.staff = args.staff;
    // Customers added over the last 30 days, some today: the workbench has figures to show.
    sim_config.recent_adds_days = 30;
    let sim = scrm_wecom_sim::Simulator::start(sim_config)
        .await
        .context("starting the WeCom simulator")?;

    let app = Application::build(config).await?;
    let port = app.port();
    let bind = app.state().config.bind;
    // The default tenant's WeCom configuration points at the simulator, whose callbacks point
    // back at scrm; a full sync is queued, so a newcomer sees data.
    crate::integration::cli::demo_setup(app.state(), &sim, &format!("http://{bind}:{port}"))
        .await
        .context("connecting the demo to its simulator")?;
    println!();
    println!("  scrm demo is running");
    println!("  console          http://{bind}:{port}/console   (中文; English: ?lang=en)");
    println!("  API              http://{bind}:{port}/api   (docs: http://{bind}:{port}/docs)");
    if password_given {
        println!("  login            admin / (the password in SCRM_ADMIN_PASSWORD)");
    } else {
        println!("  login            admin / {DEMO_ADMIN_PASSWORD}");
    }
    println!(
        "  WeCom simulator  {}  ({} customers, {} staff)",
        sim.base_url(),
        args.customers,
        args.staff
    );
    println!(
        "  data             {}",
        scrm_db::redact_url(app.state().config.database_url.expose())
    );
    println!("  stop with Ctrl-C");
    println!();
    let result = app.run_until(startup::shutdown_signal()).await;
    sim.shutdown().await;
    result
}
