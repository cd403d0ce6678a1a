//! Commands for operators besides `serve`: `check-config` proves a configuration before a
//! deployment (everything `serve` would need, reached for real), and `migrate` brings a
//! database to this build's schema without starting the portal.

use crate::config::{Config, Mode, ProvisionerKind};
use crate::store::{DatabaseUrl, Schema, Store};
use anyhow::{Context, Result};
use std::future::Future;
use std::time::Duration;

/// How long one check may take before it counts as failed (a database or provider that
/// does not answer must not hang the command).
const CHECK_TIMEOUT: Duration = Duration::from_secs(20);

/// One line of `check-config`'s report.
#[derive(Debug)]
pub struct Check {
    pub what: &'static str,
    /// What was found, or why it failed.
    pub outcome: Result<String, String>,
}

impl Check {
    pub fn passed(&self) -> bool {
        self.outcome.is_ok()
    }
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.outcome {
            Ok(found) => write!(f, "ok    {:<14} {found}", self.what),
            Err(why) => write!(f, "FAIL  {:<14} {why}", self.what),
        }
    }
}

async fn within<T>(what: &str, f: impl Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(CHECK_TIMEOUT, f)
        .await
        .with_context(|| format!("{what} did not answer within {} s", CHECK_TIMEOUT.as_secs()))?
}

fn check(what: &'static str, outcome: Result<String>) -> Check {
    Check {
        what,
        outcome: outcome.map_err(|e| format!("{e:#}")),
    }
}

/// The database URL `serve` would use (it is required there).
fn database_url(config: &Config) -> Result<DatabaseUrl> {
    config
        .database_url
        .clone()
        .context("database_url is not set (PORTCULLIS_DATABASE_URL)")
}

/// Everything `serve` needs from this configuration, each reached for real: the settings
/// themselves, the audit key, the database and its schema, the OpenID provider's discovery
/// document, IAM Identity Center with the configured credentials, and the SMTP server.
/// Nothing is changed: no migration, no mail, no assignment (only an SQLite file that is
/// missing is created empty, as `serve` would). An invalid configuration stops the rest.
pub async fn check_config(config: &Config) -> Vec<Check> {
    let mut checks = Vec::new();
    if let Err(e) = config.validate(Mode::Serve) {
        checks.push(check("configuration", Err(e)));
        return checks;
    }
    checks.push(check(
        "configuration",
        Ok(format!(
            "serve mode, listening on {}, public URL {}, {} configured entitlement(s)",
            config.listen,
            config.public_url(),
            config.entitlements.len()
        )),
    ));
    let key = config.audit.key(Mode::Serve);
    checks.push(check(
        "audit key",
        key.as_ref()
            .map(|_| "set".to_owned())
            .map_err(|e| anyhow::anyhow!("{e:#}")),
    ));
    let database = async {
        let url = database_url(config)?;
        let key = config.audit.key(Mode::Serve)?;
        let store = within("the database", Store::connect(&url, key)).await?;
        let schema = within("the database", store.schema()).await?;
        let state = match schema {
            Schema { applied: None, .. } => {
                "empty: `serve` (or `portcullis migrate`) creates the schema".to_owned()
            }
            Schema {
                applied: Some(v),
                latest,
            } if v == latest => format!("at this build's schema ({v})"),
            Schema {
                applied: Some(v),
                latest,
            } if v < latest => format!(
                "at schema {v}, this build's is {latest}: `serve` (or `portcullis migrate`) \
                 brings it up to date"
            ),
            Schema {
                applied: Some(v),
                latest,
            } => anyhow::bail!(
                "the database is at schema {v}, newer than this build's {latest}: run the \
                 newer build, or restore a backup taken before it"
            ),
        };
        Ok(format!("{url}: {state}"))
    };
    checks.push(check("database", database.await));
    let oidc = async {
        let o = config.oidc.clone().context("[oidc] is not configured")?;
        let client = crate::oidc::Oidc::new(o, &config.public_url())?;
        let m = within("the OpenID provider", async {
            client.metadata().await.map_err(|e| anyhow::anyhow!("{e}"))
        })
        .await?;
        Ok(format!(
            "{} (sign-in at {}, client {})",
            client.issuer(),
            m.authorization_endpoint().as_str(),
            client.config().client_id
        ))
    };
    checks.push(check("OpenID", oidc.await));
    // One connection to IAM Identity Center, for its own check and for the backstop's.
    let connected = if config.aws.provisioner == ProvisionerKind::Simulated {
        None
    } else {
        Some(
            within(
                "IAM Identity Center",
                crate::provisioner::sso_admin::SsoAdminProvisioner::connect_once(&config.aws),
            )
            .await,
        )
    };
    let aws = async {
        let Some(connected) = &connected else {
            return Ok(
                "aws.provisioner = \"simulated\": grants go to the simulated organization, \
                 never to AWS"
                    .to_owned(),
            );
        };
        let p = connected.as_ref().map_err(|e| anyhow::anyhow!("{e:#}"))?;
        let sets = within("IAM Identity Center", async {
            p.probe().await.map_err(anyhow::Error::new)
        })
        .await?;
        Ok(format!(
            "instance {}, identity store {}, permission sets readable ({}{} on the first page)",
            p.instance_arn(),
            p.identity_store_id(),
            sets,
            if sets == 10 { "+" } else { "" }
        ))
    };
    checks.push(check("AWS", aws.await));
    let backstop = async {
        let Some(settings) = config.aws.backstop()? else {
            return Ok("off (aws.backstop)".to_owned());
        };
        let Some(connected) = &connected else {
            return Ok("on, but the simulated organization has no backstop".to_owned());
        };
        let p = connected.as_ref().map_err(|e| {
            anyhow::anyhow!("needs IAM Identity Center, which did not answer: {e:#}")
        })?;
        let role = settings.role_arn.clone();
        let b = crate::provisioner::sso_admin::backstop::SchedulerBackstop::connect(
            &config.aws,
            settings,
            p.instance_arn(),
        )
        .await;
        within("EventBridge Scheduler", async {
            b.check_group().await.map_err(|e| {
                anyhow::anyhow!(
                    "the schedule group {:?} cannot be read (create it, and allow \
                     scheduler:GetScheduleGroup): {e}",
                    b.group()
                )
            })
        })
        .await?;
        within("IAM", async {
            b.check_role().await.map_err(|e| {
                anyhow::anyhow!(
                    "the schedule group {} is there, but the role schedules run as cannot be \
                     found (create it, and allow the portal iam:GetRole on it): {e}",
                    b.group()
                )
            })
        })
        .await?;
        Ok(format!(
            "schedule group {} found; schedules run as {role}, which exists",
            b.group()
        ))
    };
    checks.push(check("backstop", backstop.await));
    let smtp = async {
        let Some(smtp) = &config.smtp else {
            return Ok("not configured: mail stays in the outbox page".to_owned());
        };
        let m = crate::mailer::SmtpMailer::new(smtp)?;
        within("the SMTP server", m.reach()).await?;
        Ok(format!("{} answers (nothing sent)", m.server()))
    };
    checks.push(check("SMTP", smtp.await));
    checks
}

/// Brings `database_url`'s database to this build's schema, as `serve` does at start,
/// and says where it stands. Safe to run while replicas serve (migrations are additive
/// and sqlx takes a lock while it applies them).
pub async fn migrate(config: &Config) -> Result<String> {
    let url = database_url(config)?;
    // Migrations write no audit event: the key is not needed (a bad one is still refused).
    let key = match &config.audit.key {
        Some(_) => config.audit.key(Mode::Serve)?,
        None => crate::config::AuditKey::demo(),
    };
    let store = within("the database", Store::connect(&url, key)).await?;
    let before = within("the database", store.schema()).await?;
    if before.applied.is_some_and(|v| v > before.latest) {
        anyhow::bail!(
            "the database is at schema {}, newer than this build's {}: nothing done",
            before.applied.unwrap_or_default(),
            before.latest
        );
    }
    store.migrate().await?;
    let after = store.schema().await?;
    Ok(match before.applied {
        Some(v) if v == before.latest => format!("{url}: already at schema {v}; nothing to do"),
        Some(v) => format!(
            "{url}: migrated from schema {v} to {}",
            after.applied.unwrap_or_default()
        ),
        None => format!(
            "{url}: schema created ({})",
            after.applied.unwrap_or_default()
        ),
    })
}

/// The live entitlements of `database_url`'s database (the demo's without one) as the
/// configuration file's `[[entitlements]]`, with a comment saying what it is: what
/// `portcullis entitlements export` prints. Read back as configuration, it declares the
/// same entitlements (retired ones are left out: declaring them would bring them back).
pub async fn export_entitlements(config: &Config) -> Result<String> {
    let store = crate::audit_store(config).await?;
    let mut conn = store.conn().await?;
    let retired = crate::store::retired_entitlements(&mut conn).await?;
    let live: Vec<_> = crate::store::all_entitlements(&mut conn)
        .await?
        .into_iter()
        .filter(|e| !retired.contains_key(&e.id))
        .collect();
    let now = crate::store::Store::database_time(&store).await?;
    let header = format!(
        "# {} live entitlement(s), exported by portcullis {} at {}.\n\
         # Paste into the configuration file: read back, they declare the same entitlements.\n\
         # (chat.everything is written out into each policy.chat.)\n\n",
        live.len(),
        env!("CARGO_PKG_VERSION"),
        now.format_utc()
    );
    Ok(header + &crate::config::entitlements_toml(&live)?)
}
