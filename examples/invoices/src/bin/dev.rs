//! `cargo run --bin dev`: this app on the local gateway, its routes from `template.yaml` running
//! in-process with its hook and check. `cargo run --bin dev -- schema -o asyncapi.json` writes its
//! contract.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    invoices::dev().run().await
}
