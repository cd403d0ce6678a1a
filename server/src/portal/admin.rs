//! The admin pages: overview (requests, live grants, alerts, worker health), the audit log,
//! and the AWS page (assignments, catalog, drift, upkeep on demand).

use super::*;

impl PortalService {
    pub(super) async fn admin_overview(
        &self,
        who: &Principal,
        page: OverviewCursor,
    ) -> Result<AdminOverview, AppError> {
        let Admin(_) = self.admin(who, "admin_overview").await?;
        let before = parse_cursor("requests", page.requests.as_deref())?;
        let after = parse_cursor("grants", page.grants.as_deref())?;
        let mut conn = self.store.conn().await.or_internal()?;
        // One row past the page says whether there is a next one.
        let mut requests = store::requests_page(
            &mut conn,
            before.as_ref().map(|(at, id)| (*at, id.as_str())),
            REQUESTS_PER_PAGE + 1,
        )
        .await
        .or_internal()?;
        let older_requests = next_cursor(&mut requests, REQUESTS_PER_PAGE, |r| {
            (r.created_at, r.access_request_id.clone())
        });
        let mut grants = store::live_grants_page(
            &mut conn,
            after.as_ref().map(|(at, id)| (*at, id.as_str())),
            GRANTS_PER_PAGE + 1,
        )
        .await
        .or_internal()?;
        let later_grants = next_cursor(&mut grants, GRANTS_PER_PAGE, |g| {
            (g.ends_at, g.access_grant_id.clone())
        });
        // Break-glass uses have their own review list.
        let alerts = store::open_alerts(&mut conn, Some(store::AlertKind::BreakGlass))
            .await
            .or_internal()?;
        let break_glass = self.break_glass_to_review(&mut conn).await.or_internal()?;
        let stats = store::job_stats(&mut conn, self.now(), Duration::from_secs(60))
            .await
            .or_internal()?;
        let parked = store::parked_mail(&mut conn, 100).await.or_internal()?;
        let audit_chain = store::recent_runs(&mut conn, JobKind::VerifyAudit, 5)
            .await
            .or_internal()?
            .into_iter()
            .find_map(|r| {
                Some(AuditChainView {
                    at: r.finished_at?.format_utc(),
                    verified: r.status == "succeeded",
                    summary: r.summary.unwrap_or_default(),
                })
            });
        let retired = store::retired_entitlements(&mut conn).await.or_internal()?;
        let mut entitlements: Vec<EntitlementStatusView> = self
            .entitlements_by_id(&mut conn)
            .await
            .or_internal()?
            .values()
            .map(|e| EntitlementStatusView {
                id: e.id.clone(),
                name: e.name.clone(),
                approval: Self::describe_policy(e),
                max_duration: format_duration(e.policy.max_duration()),
                retired_at: retired.get(&e.id).map(|t| t.format_utc()),
            })
            .collect();
        // Live ones first, then by name.
        entitlements.sort_by(|a, b| {
            (a.retired_at.is_some(), &a.name).cmp(&(b.retired_at.is_some(), &b.name))
        });
        Ok(AdminOverview {
            older_requests,
            later_grants,
            paged: before.is_some() || after.is_some(),
            break_glass,
            entitlements,
            audit_chain,
            parked_mail: parked
                .into_iter()
                .map(|m| ParkedMailView {
                    id: m.outbox_id,
                    to: m.recipient,
                    subject: m.subject,
                    attempts: m.attempts,
                    last_error: m.last_error.unwrap_or_default(),
                    created_at: m.created_at.format_utc(),
                })
                .collect(),
            requests: self
                .request_views(&mut conn, requests)
                .await
                .or_internal()?,
            grants: self.flag_trouble(&mut conn, grants).await.or_internal()?,
            alerts: alerts
                .into_iter()
                .map(|a| AlertView {
                    kind: a.kind.to_string(),
                    message: a.message,
                    at: a.created_at.format_utc(),
                })
                .collect(),
            worker: WorkerHealth {
                queued_jobs: stats.queued,
                overdue_jobs: stats.overdue,
                failing_jobs: stats.failing,
                oldest_overdue: stats.oldest_overdue.map(Timestamp::format_utc),
            },
        })
    }

    pub(super) async fn audit_log(
        &self,
        who: &Principal,
        filter: AuditFilter,
    ) -> Result<AuditPage, AppError> {
        let Admin(_) = self.admin(who, "audit_log").await?;
        let mut conn = self.store.conn().await.or_internal()?;
        let before = filter.before;
        if before.is_some_and(|b| b < 1) {
            return Err(AppError::invalid("before", "an event number, 1 or more"));
        }
        let q = store::AuditQuery {
            limit: AUDIT_PER_PAGE + 1,
            before,
            ..audit_query(filter)?
        };
        let mut rows = store::query_audit(&mut conn, &q).await.or_internal()?;
        let older = (rows.len() as i64 > AUDIT_PER_PAGE).then(|| {
            rows.truncate(AUDIT_PER_PAGE as usize);
            rows.last().map_or(0, |r| r.seq)
        });
        Ok(AuditPage {
            events: rows.into_iter().map(super::detail::audit_view).collect(),
            older,
        })
    }

    /// Every event matching the filter, oldest first, streamed as `format` (the export
    /// route). Admins only; a refusal is audited like any other.
    pub async fn audit_export(
        &self,
        who: &Principal,
        filter: AuditFilter,
        format: export::Format,
    ) -> Result<export::Chunks, AppError> {
        let Admin(_) = self.admin(who, "audit_export").await?;
        let q = audit_query(filter)?;
        Ok(export::chunks(self.store.clone(), q, format))
    }

    pub(super) async fn aws_assignments(
        &self,
        who: &Principal,
    ) -> Result<Vec<AssignmentView>, AppError> {
        let Admin(_) = self.admin(who, "aws_assignments").await?;
        let mut conn = self.store.conn().await.or_internal()?;
        let pairs = crate::grants::managed_pairs(&mut conn)
            .await
            .or_internal()?;
        let records = self
            .provisioner
            .list_assignments(&pairs)
            .await
            .map_err(|e| internal(e.into()))?;
        let users = self
            .users_by_id(&mut conn, records.iter().map(|r| r.principal.as_str()))
            .await
            .or_internal()?;
        let mut out = Vec::new();
        for r in records {
            let account = store::get_account(&mut conn, &r.account_id)
                .await
                .or_internal()?;
            let ps = store::get_permission_set(&mut conn, &r.permission_set_arn)
                .await
                .or_internal()?;
            out.push(AssignmentView {
                account_name: account.map(|a| a.name).unwrap_or_default(),
                account_id: r.account_id,
                permission_set: ps.map(|p| p.name).unwrap_or(r.permission_set_arn),
                principal: users
                    .get(&r.principal)
                    .map(|u| u.display_name.clone())
                    .unwrap_or(r.principal),
                created_at: r.created_at.map(Timestamp::format_utc).unwrap_or_default(),
            });
        }
        Ok(out)
    }

    pub(super) async fn aws_overview(&self, who: &Principal) -> Result<AwsOverview, AppError> {
        let Admin(_) = self.admin(who, "aws_overview").await?;
        let result: anyhow::Result<AwsOverview> = async {
            let mut conn = self.store.conn().await?;
            let ous: HashMap<String, String> = store::all_org_units(&mut conn)
                .await?
                .into_iter()
                .map(|o| (o.ou_id, o.name))
                .collect();
            let accounts = store::all_accounts(&mut conn)
                .await?
                .into_iter()
                .map(|a| AccountView {
                    ou_path: a
                        .ou_path
                        .split('/')
                        .filter(|id| !id.is_empty())
                        .map(|id| ous.get(id).map(String::as_str).unwrap_or(id))
                        .collect::<Vec<_>>()
                        .join(" / "),
                    account_id: a.account_id,
                    name: a.name,
                })
                .collect();
            let permission_sets = store::all_permission_sets(&mut conn)
                .await?
                .into_iter()
                .map(|p| PermissionSetView {
                    session_duration: format_duration(Duration::from_secs(
                        p.session_duration_secs.max(0) as u64,
                    )),
                    arn: p.permission_set_arn,
                    name: p.name,
                    description: p.description,
                })
                .collect();
            let runs = |rows: Vec<store::RunRow>| {
                rows.into_iter()
                    .map(|r| RunView {
                        status: r.status,
                        progress: r.progress,
                        summary: r.summary.unwrap_or_default(),
                        started_at: r.started_at.format_utc(),
                        finished_at: r.finished_at.map(Timestamp::format_utc).unwrap_or_default(),
                    })
                    .collect()
            };
            let catalog_runs = runs(store::recent_runs(&mut conn, JobKind::SyncCatalog, 5).await?);
            let reconcile_runs = runs(store::recent_runs(&mut conn, JobKind::Reconcile, 5).await?);
            let drift = store::open_alerts_of(
                &mut conn,
                &[
                    store::AlertKind::DriftExternal,
                    store::AlertKind::DriftMissing,
                    store::AlertKind::DriftOrphan,
                ],
            )
            .await?
            .into_iter()
            .map(|a| AlertView {
                kind: a.kind.to_string(),
                message: a.message,
                at: a.created_at.format_utc(),
            })
            .collect();
            Ok(AwsOverview {
                provisioner: self.provisioner.name().to_owned(),
                accounts,
                permission_sets,
                catalog_runs,
                reconcile_runs,
                drift,
            })
        }
        .await;
        result.or_internal()
    }

    pub(super) async fn run_upkeep(&self, who: &Principal, what: &str) -> Result<(), AppError> {
        let Admin(admin) = self.admin(who, "run_upkeep").await?;
        let (kind, label) = match what {
            "catalog" => (JobKind::SyncCatalog, "catalog sync"),
            "reconcile" => (JobKind::Reconcile, "reconciliation"),
            _ => {
                return Err(AppError::NotFound(format!(
                    "A maintenance task called {what:?}"
                )))
            }
        };
        let now = self.now();
        let result: anyhow::Result<()> = async {
            let mut tx = self.store.begin().await?;
            store::schedule_singleton(&mut tx, kind, now, now).await?;
            audit::audit(
                &mut tx,
                &Actor::of(admin),
                Event {
                    action: &format!("{}.requested", kind.as_str()),
                    person_id: None,
                    subject_kind: "maintenance",
                    subject_id: kind.as_str(),
                    entitlement_id: None,
                    detail: format!("{label} asked for from the admin page"),
                },
                now,
            )
            .await?;
            tx.commit().await?;
            Ok(())
        }
        .await;
        result.or_internal()?;
        self.upkeep_wake.notify_one();
        Ok(())
    }
}

/// The longest filter text the audit log takes (a name, an id or an action).
const MAX_FILTER_CHARS: usize = 200;

/// The audit query for a filter, refusing filter text too long to be a real one (the
/// database would refuse a huge LIKE pattern as an error of its own).
/// Rows a page of the admin overview and of the audit log shows.
const REQUESTS_PER_PAGE: i64 = 50;
const GRANTS_PER_PAGE: i64 = 100;
const AUDIT_PER_PAGE: i64 = 100;

/// A page cursor as links carry it: `<milliseconds>.<id>` of the last row shown.
fn parse_cursor(
    field: &str,
    cursor: Option<&str>,
) -> Result<Option<(Timestamp, String)>, AppError> {
    let Some(c) = cursor.map(str::trim).filter(|c| !c.is_empty()) else {
        return Ok(None);
    };
    c.split_once('.')
        .filter(|(_, id)| !id.is_empty() && id.len() <= 64)
        .and_then(|(at, id)| Some((Timestamp::from_millis(at.parse().ok()?), id.to_owned())))
        .map(Some)
        .ok_or_else(|| {
            AppError::invalid(field, "not a page of this list: start again from the first")
        })
}

/// Cuts `rows` to `limit` and gives the cursor of the last row kept, when there was more.
fn next_cursor<T>(
    rows: &mut Vec<T>,
    limit: i64,
    key: impl Fn(&T) -> (Timestamp, String),
) -> Option<String> {
    if rows.len() as i64 <= limit {
        return None;
    }
    rows.truncate(limit as usize);
    rows.last().map(|r| {
        let (at, id) = key(r);
        format!("{}.{id}", at.millis())
    })
}

fn audit_query(filter: AuditFilter) -> Result<store::AuditQuery, AppError> {
    for (field, value) in [
        ("person", &filter.person),
        ("entitlement", &filter.entitlement),
        ("action", &filter.action),
    ] {
        if value
            .as_deref()
            .is_some_and(|v| v.chars().count() > MAX_FILTER_CHARS)
        {
            return Err(AppError::invalid(
                field,
                format!("at most {MAX_FILTER_CHARS} characters"),
            ));
        }
    }
    Ok(store::AuditQuery::filter(
        filter.person,
        filter.entitlement,
        filter.action,
    ))
}

impl PortalService {
    /// Break-glass uses whose review is open (their alert), oldest first.
    async fn break_glass_to_review(
        &self,
        conn: &mut AnyConnection,
    ) -> anyhow::Result<Vec<BreakGlassView>> {
        let now = self.now();
        let open = store::open_alerts_of(conn, &[store::AlertKind::BreakGlass]).await?;
        let mut requests =
            store::requests_by_ids(conn, open.iter().map(|a| a.subject_id.as_str())).await?;
        let users = self
            .users_by_id(conn, requests.values().map(|r| r.requester_id.as_str()))
            .await?;
        let ents = self.entitlements_by_id(conn).await?;
        let mut out: Vec<(Timestamp, BreakGlassView)> = open
            .iter()
            .filter_map(|a| requests.remove(&a.subject_id))
            .map(|r| {
                let e = ents.get(&r.entitlement_id);
                let within = e.map_or(24 * 3600, |e| e.policy.review_within_secs);
                let view = BreakGlassView {
                    request_id: r.access_request_id.clone(),
                    requester: users
                        .get(&r.requester_id)
                        .map_or_else(|| r.requester_id.clone(), |u| u.display_name.clone()),
                    entitlement: e.map_or_else(|| r.entitlement_id.clone(), |e| e.name.clone()),
                    justification: r.justification.clone(),
                    used_at: r.created_at.format_utc(),
                    overdue: now >= r.created_at.plus(Duration::from_secs(within)),
                };
                (r.created_at, view)
            })
            .collect();
        out.sort_by_key(|(at, _)| *at);
        Ok(out.into_iter().map(|(_, v)| v).collect())
    }

    /// An admin acknowledges a break-glass use, with a comment saying what they checked.
    /// Never the person who used it; each use once.
    pub(super) async fn review_break_glass(
        &self,
        who: &Principal,
        request_id: &str,
        comment: &str,
    ) -> Result<(), AppError> {
        let Admin(_) = self.admin(who, "review_break_glass").await?;
        let now = self.now();
        let id = Self::parse_id(request_id, "That break-glass use")?;
        // Errors name the use they are about (the page has a form for each).
        let invalid = |m: String| {
            AppError::Invalid(vec![
                FieldError::new("comment", m),
                FieldError::new("for", id.as_str()),
            ])
        };
        let comment = Comment::parse(comment).map_err(invalid)?;
        if comment.to_string().is_empty() {
            return Err(invalid(
                "say what you checked: a review needs a comment".into(),
            ));
        }
        let mut tx = self.store.begin().await.or_internal()?;
        let kind = store::AlertKind::BreakGlass;
        let Some(request) = store::lock_request(&mut tx, id.as_str())
            .await
            .or_internal()?
        else {
            return Err(AppError::NotFound("That break-glass use".into()));
        };
        if !store::alert_open(&mut tx, kind, id.as_str())
            .await
            .or_internal()?
        {
            return Err(
                match store::alert_exists(&mut tx, kind, id.as_str())
                    .await
                    .or_internal()?
                {
                    true => AppError::Conflict("This break-glass use was already reviewed.".into()),
                    false => AppError::NotFound("That break-glass use".into()),
                },
            );
        }
        if request.requester_id == who.user_id {
            drop(tx);
            let why = "you cannot review your own break-glass use";
            return Err(self.deny(who, "review_break_glass", id.as_str(), why).await);
        }
        let result: anyhow::Result<()> = async {
            store::resolve_alerts(&mut tx, kind, id.as_str(), now).await?;
            store::delete_jobs_for(&mut tx, id.as_str(), JobKind::BreakGlassReview).await?;
            audit::audit(
                &mut tx,
                &Actor::of(who),
                Event {
                    action: "break_glass.reviewed",
                    person_id: Some(&request.requester_id),
                    subject_kind: "request",
                    subject_id: id.as_str(),
                    entitlement_id: Some(&request.entitlement_id),
                    detail: format!("reviewed: {comment}"),
                },
                now,
            )
            .await?;
            tx.commit().await?;
            Ok(())
        }
        .await;
        result.or_internal()
    }
}
