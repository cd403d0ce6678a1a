//! Which command uses this database: `demo` or `serve`, claimed once, at the first start
//! (invariant 11: demo and production never share a database).

use super::*;

/// The command a database belongs to.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum PortalMode {
    Demo,
    Serve,
}

impl PortalMode {
    pub fn as_str(self) -> &'static str {
        match self {
            PortalMode::Demo => "demo",
            PortalMode::Serve => "serve",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        match s {
            "demo" => Ok(PortalMode::Demo),
            "serve" => Ok(PortalMode::Serve),
            other => anyhow::bail!("unknown portal mode {other:?} in the database"),
        }
    }
}

/// The mode recorded in the database, if one was claimed.
pub async fn portal_mode(conn: &mut AnyConnection) -> Result<Option<PortalMode>> {
    let mode: Option<String> =
        sqlx::query_scalar("SELECT mode FROM portal_mode WHERE portal_mode_id = 1")
            .fetch_optional(conn)
            .await?;
    mode.as_deref().map(PortalMode::parse).transpose()
}

/// Records `mode` for a database that has none and returns it; returns the recorded mode
/// otherwise (the caller refuses to start when it is not `mode`).
pub async fn claim_portal_mode(
    conn: &mut AnyConnection,
    mode: PortalMode,
    now: Timestamp,
) -> Result<PortalMode> {
    sqlx::query(
        "INSERT INTO portal_mode (portal_mode_id, mode, claimed_at) VALUES (1, $1, $2)
         ON CONFLICT (portal_mode_id) DO NOTHING",
    )
    .bind(mode.as_str())
    .bind(now.millis())
    .execute(&mut *conn)
    .await?;
    portal_mode(conn)
        .await?
        .context("the portal mode was claimed but cannot be read back")
}
