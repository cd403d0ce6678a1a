//! One request's lifecycle, driven over HTTP: ask, approve (or auto-approve), expire.

use super::*;

#[derive(Clone, Debug)]
pub(crate) struct Life {
    pub(crate) n: usize,
    pub(crate) user: usize,
    pub(crate) account: usize,
    pub(crate) auto: bool,
    pub(crate) secs: u64,
    pub(crate) request_id: Option<String>,
    /// The grant's final status, or what it was when the lifecycle gave up.
    pub(crate) outcome: String,
}

pub(crate) struct Ctx {
    pub(crate) s: Settings,
    pub(crate) web: Web,
    pub(crate) db: PgPool,
    pub(crate) sessions: Vec<String>,
    pub(crate) lead: String,
    pub(crate) busy: Mutex<HashSet<(usize, usize)>>,
    pub(crate) stop: AtomicBool,
    pub(crate) started: AtomicUsize,
}

pub(crate) async fn request_by_token(db: &PgPool, token: &str) -> Result<Option<(String, String)>> {
    let row = sqlx::query(
        "SELECT access_request_id, status FROM access_request WHERE justification = $1 \
         ORDER BY created_at LIMIT 1",
    )
    .bind(token)
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

pub(crate) async fn lifecycle(ctx: Arc<Ctx>, mut life: Life) -> Life {
    let deadline = Instant::now()
        + Duration::from_secs(life.secs)
        + ctx.s.outage * 2
        + Duration::from_secs_f64(ctx.s.bound_secs)
        + Duration::from_secs(180);
    let token = format!("chaos lifecycle {:05}: incident drill", life.n);
    let entitlement = format!(
        "acct{}-{}",
        life.account,
        if life.auto { "auto" } else { "mgr" }
    );
    let session = ctx.sessions[life.user].clone();
    let duration = format!("{}s", life.secs);
    // Create the request, once: before every try, look for it (a reply lost to a kill
    // may hide a request that was made).
    while life.request_id.is_none() && Instant::now() < deadline {
        match request_by_token(&ctx.db, &token).await {
            Ok(Some((id, _))) => {
                life.request_id = Some(id);
                break;
            }
            Ok(None) => {}
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(1000)).await;
                continue;
            }
        }
        let res = ctx
            .web
            .server_fn(
                app::api::CreateRequest::PATH,
                &session,
                &[
                    ("entitlement", &entitlement),
                    ("justification", &token),
                    ("duration", &duration),
                ],
            )
            .await;
        match res {
            Ok(body) => life.request_id = serde_json::from_str::<String>(&body).ok(),
            Err(_) => tokio::time::sleep(Duration::from_millis(700)).await,
        }
    }
    let Some(request_id) = life.request_id.clone() else {
        life.outcome = "request never created".into();
        return life;
    };
    // The manager approves (again only while it is still pending).
    if !life.auto {
        while Instant::now() < deadline {
            match request_by_token(&ctx.db, &token).await {
                Ok(Some((_, status))) if status != "pending" => break,
                Ok(_) => {}
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(1000)).await;
                    continue;
                }
            }
            let res = ctx
                .web
                .server_fn(
                    app::api::Decide::PATH,
                    &ctx.lead,
                    &[
                        ("request_id", &request_id),
                        ("verdict", "approve"),
                        ("comment", "approved by the chaos harness"),
                    ],
                )
                .await;
            if res.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(700)).await;
        }
    }
    // Let it expire: wait for the grant to be over.
    life.outcome = "no grant".into();
    while Instant::now() < deadline {
        let row = sqlx::query("SELECT status FROM access_grant WHERE access_request_id = $1")
            .bind(&request_id)
            .fetch_optional(&ctx.db)
            .await;
        if let Ok(Some(row)) = row {
            let status: String = row.get(0);
            let done = status == "revoked" || status == "failed";
            life.outcome = status;
            if done {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    life
}
