//! Rebuild when a migration changes: `sqlx::migrate!` embeds the files at compile time.
fn main() {
    for dialect in ["sqlite", "mysql", "postgres"] {
        println!("cargo:rerun-if-changed=../../migrations/{dialect}");
    }
}
