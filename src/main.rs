//! The `haven` binary; see `haven --help`.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    haven::cli::main().await
}
