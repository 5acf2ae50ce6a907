//! The `scrm` binary: everything lives in the library; see `scrm --help`.

fn main() -> std::process::ExitCode {
    scrm::cli::run()
}
