use portcullis::config::{Config, LogConfig, LogFormat, Mode};
use portcullis::export::Format;
use portcullis::store::AuditQuery;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "\
Portcullis: just-in-time access to AWS.

Usage:
  portcullis demo  [--config FILE]   Run locally with demo personas, simulated AWS and a mail outbox page
  portcullis serve [--config FILE]   Run in production (needs database, public URL, OIDC settings and audit key)
  portcullis audit verify [--config FILE]
                                     Verify the whole audit chain with the audit key: exits 0 when it
                                     holds, 1 at the first event that does not (its number is printed),
                                     2 when the configuration or the database is not usable
  portcullis audit export [--config FILE] [--format csv|jsonl]
                          [--person P] [--entitlement E] [--action A]
                                     Write every matching audit event to stdout, oldest first
  portcullis entitlements export [--config FILE]
                                     Write the live entitlements as the configuration file's
                                     [[entitlements]] TOML to stdout (policy as code, both ways)
  portcullis check-config [--config FILE]
                                     Check everything serve needs, reaching each for real: the
                                     settings, the audit key, the database and its schema, the
                                     OpenID provider, IAM Identity Center and the SMTP server.
                                     Changes nothing; exits 0 when all pass, 1 when one fails
  portcullis migrate [--config FILE] Bring the database to this build's schema (serve does it
                                     at start too) and say where it stands
  portcullis version                 Print the version, the schema this build expects and
                                     the site built into it

Configuration: defaults, then the TOML file, then PORTCULLIS_* environment variables
(nested keys joined with __, e.g. PORTCULLIS_WORKER__LEASE_SECS=30). See README.md.
Without database_url the audit and entitlements commands read the demo database (with the\ndemo key).";

enum Command {
    Run(Mode),
    AuditVerify,
    AuditExport(Format, AuditQuery),
    EntitlementsExport,
    CheckConfig,
    Migrate,
    Version,
}

fn parse_args() -> Result<(Command, Option<PathBuf>), String> {
    let mut args = std::env::args().skip(1);
    let mut command = match args.next().as_deref() {
        Some("demo") => Command::Run(Mode::Demo),
        Some("serve") => Command::Run(Mode::Serve),
        Some("audit") => match args.next().as_deref() {
            Some("verify") => Command::AuditVerify,
            Some("export") => Command::AuditExport(Format::Csv, AuditQuery::default()),
            Some(other) => return Err(format!("unknown audit command {other:?}")),
            None => return Err("audit needs a command: verify or export".into()),
        },
        Some("entitlements") => match args.next().as_deref() {
            Some("export") => Command::EntitlementsExport,
            Some(other) => return Err(format!("unknown entitlements command {other:?}")),
            None => return Err("entitlements needs a command: export".into()),
        },
        Some("check-config") => Command::CheckConfig,
        Some("migrate") => Command::Migrate,
        Some("version" | "--version" | "-V") => Command::Version,
        Some("-h" | "--help" | "help") | None => return Err(String::new()),
        Some(other) => return Err(format!("unknown command {other:?}")),
    };
    let mut config = None;
    let (mut person, mut entitlement, mut action) = (None, None, None);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match (arg.as_str(), &mut command) {
            ("--config" | "-c", _) => config = Some(PathBuf::from(value("--config")?)),
            ("--format", Command::AuditExport(format, _)) => {
                let v = value("--format")?;
                *format =
                    Format::parse(&v).ok_or(format!("--format is csv or jsonl, not {v:?}"))?;
            }
            ("--person", Command::AuditExport(..)) => person = Some(value("--person")?),
            ("--entitlement", Command::AuditExport(..)) => {
                entitlement = Some(value("--entitlement")?)
            }
            ("--action", Command::AuditExport(..)) => action = Some(value("--action")?),
            (other, _) => return Err(format!("unknown argument {other:?}")),
        }
    }
    if let Command::AuditExport(_, q) = &mut command {
        *q = AuditQuery::filter(person, entitlement, action);
    }
    Ok((command, config))
}

#[tokio::main]
async fn main() -> ExitCode {
    let (command, file) = match parse_args() {
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
    if let Command::Version = command {
        let schema = portcullis::store::MIGRATOR
            .iter()
            .map(|m| m.version)
            .max()
            .unwrap_or_default();
        println!("portcullis {} (schema {schema})", env!("CARGO_PKG_VERSION"));
        match portcullis::http::Site::embedded() {
            Some(site) => println!("site: built in, {}", site.describe()),
            None => println!("site: not built in (read from site_root at start)"),
        }
        return ExitCode::SUCCESS;
    }
    let config = Config::load(file.as_deref()).and_then(|config| {
        // stdout is the other commands' output: their logs go to stderr.
        init_logs(&config.log, !matches!(command, Command::Run(_)))?;
        Ok(config)
    });
    let config = match config {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e:#}");
            return match command {
                Command::Run(_) => ExitCode::FAILURE,
                _ => ExitCode::from(2),
            };
        }
    };
    match command {
        Command::Run(mode) => match portcullis::run(config, mode).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::AuditVerify => audit_verify(&config).await,
        Command::AuditExport(format, q) => audit_export(&config, format, q).await,
        Command::EntitlementsExport => {
            match portcullis::operate::export_entitlements(&config).await {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => usage_error(e),
            }
        }
        Command::CheckConfig => check_config(&config).await,
        Command::Migrate => match portcullis::operate::migrate(&config).await {
            Ok(done) => {
                println!("{done}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Version => unreachable!("answered before the configuration is read"),
    }
}

/// Logs as `[log]` says: `RUST_LOG` (when set) or `log.level` filters, `log.format`
/// picks text or one JSON object per line (with the request's span: id, method, path).
fn init_logs(log: &LogConfig, to_stderr: bool) -> anyhow::Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter = match EnvFilter::try_from_default_env() {
        Ok(filter) => filter,
        Err(_) => EnvFilter::try_new(&log.level)
            .map_err(|e| anyhow::anyhow!("log.level {:?} is not a log filter: {e}", log.level))?,
    };
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    match (log.format, to_stderr) {
        (LogFormat::Text, false) => logs.init(),
        (LogFormat::Text, true) => logs.with_writer(std::io::stderr).init(),
        (LogFormat::Json, false) => logs
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
        (LogFormat::Json, true) => logs
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .init(),
    }
    Ok(())
}

async fn check_config(config: &Config) -> ExitCode {
    let checks = portcullis::operate::check_config(config).await;
    for c in &checks {
        println!("{c}");
    }
    let failed = checks.iter().filter(|c| !c.passed()).count();
    if failed == 0 {
        println!("all {} checks passed", checks.len());
        ExitCode::SUCCESS
    } else {
        println!("{failed} of {} checks failed", checks.len());
        ExitCode::FAILURE
    }
}

async fn audit_verify(config: &Config) -> ExitCode {
    let check = async {
        let store = portcullis::audit_store(config).await?;
        let mut conn = store.conn().await?;
        portcullis::store::verify_audit_chain(&mut conn, store.audit_key()).await
    }
    .await;
    match check {
        Ok(c) => match c.first_bad {
            None => {
                println!("chain verified: {} events", c.events);
                if c.keyed_from > 1 {
                    println!(
                        "events 1 to {} predate the audit key and were checked with the unkeyed rule",
                        c.keyed_from - 1
                    );
                }
                ExitCode::SUCCESS
            }
            Some(seq) => {
                println!("chain broken at event {seq}");
                eprintln!(
                    "error: audit event {seq} does not verify: it was changed, removed or written \
                     without this key ({} events before it verified)",
                    c.events
                );
                if let Some(hint) = c.unkeyed_hint() {
                    eprintln!("{hint}");
                }
                ExitCode::FAILURE
            }
        },
        Err(e) => usage_error(e),
    }
}

async fn audit_export(config: &Config, format: Format, q: AuditQuery) -> ExitCode {
    let store = match portcullis::audit_store(config).await {
        Ok(store) => store,
        Err(e) => return usage_error(e),
    };
    let mut chunks = portcullis::export::chunks(store, q, format);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    while let Some(chunk) = futures::StreamExt::next(&mut chunks).await {
        let written = match chunk {
            Ok(text) => out.write_all(text.as_bytes()),
            Err(e) => {
                let _ = out.flush();
                eprintln!("error: export cut short: {e:#}");
                return ExitCode::FAILURE;
            }
        };
        if let Err(e) = written {
            eprintln!("error: cannot write the export: {e}");
            return ExitCode::FAILURE;
        }
    }
    if let Err(e) = out.flush() {
        eprintln!("error: cannot write the export: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn usage_error(e: anyhow::Error) -> ExitCode {
    eprintln!("error: {e:#}");
    ExitCode::from(2)
}
