//! `scrm bench mass-send` (placeholder until wired; see [`run`]).

/// Run the mass-send benchmark.
pub async fn run() -> anyhow::Result<String> {
    anyhow::bail!("mass-send benchmark not implemented yet")
}
