use anyhow::Result;
use portcullis::config::{Config, Mode};
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "\
Portcullis: just-in-time access to AWS.

Usage:
  portcullis demo  [--config FILE]   Run locally with demo personas, simulated AWS and a mail outbox page
  portcullis serve [--config FILE]   Run in production (needs database, public URL and OIDC settings)

Configuration: defaults, then the TOML file, then PORTCULLIS_* environment variables
(nested keys joined with __, e.g. PORTCULLIS_WORKER__LEASE_SECS=30). See README.md.";

fn parse_args() -> Result<(Mode, Option<PathBuf>), String> {
    let mut args = std::env::args().skip(1);
    let mode = match args.next().as_deref() {
        Some("demo") => Mode::Demo,
        Some("serve") => Mode::Serve,
        Some("-h" | "--help" | "help") | None => return Err(String::new()),
        Some(other) => return Err(format!("unknown command {other:?}")),
    };
    let mut config = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" | "-c" => {
                config = Some(PathBuf::from(args.next().ok_or("--config needs a file")?));
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok((mode, config))
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn,tower_http=warn".into()),
        )
        .init();
    let (mode, file) = match parse_args() {
        Ok(v) => v,
        Err(msg) => {
            if !msg.is_empty() {
                eprintln!("error: {msg}\n");
            }
            eprintln!("{USAGE}");
            return if msg.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            };
        }
    };
    let result = match Config::load(file.as_deref()) {
        Ok(config) => portcullis::run(config, mode).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
