//! A request's own page (`/requests/{id}`): who asked and why, each decision, each grant
//! and where it stands, and the audit trail of all of it. Every mail about a request links
//! here; deciding from it is the same `decide` as anywhere (a signed-in approver with a
//! recent sign-in, every check made again), never the link itself.

use super::*;
use crate::store::AuditRow;

/// The most audit events one request page shows (the newest when there are more).
const HISTORY_LIMIT: usize = 200;

impl PortalService {
    pub(super) async fn request_detail(
        &self,
        who: &Principal,
        request_id: &str,
    ) -> Result<RequestDetail, AppError> {
        let not_found = || AppError::NotFound("That request".into());
        let id = Self::parse_id(request_id, "That request")?;
        let mut conn = self.store.conn().await.or_internal()?;
        let Some(request) = store::get_request(&mut conn, id.as_str())
            .await
            .or_internal()?
        else {
            return Err(not_found());
        };
        let (entitlement, requester) = self.detail_parties(&mut conn, &request).await?;
        // Asked only where the answer matters (a manager fallback), as `notify::policy_for` does.
        let manager_known = !entitlement.policy.has_manager_fallback()
            || notify::manager_known(&mut conn, &requester)
                .await
                .or_internal()?;
        let policy = entitlement
            .policy
            .with_escalation(request.escalation().as_ref())
            .for_requester(manager_known);
        let decisions = store::decisions_for_request(&mut conn, id.as_str())
            .await
            .or_internal()?;
        let decided_it = decisions.iter().any(|d| d.approver_id == who.user_id);
        let approver = policy.may_approve(who, &requester).is_ok();
        // The step it waits at: an approver of a later step may look, not decide yet.
        // Counted as deciding counts (an approval whose approver lost the right does not).
        let standing = policy.progress(
            &approval::counted(&mut conn, &policy, &requester, &decisions)
                .await
                .or_internal()?,
        );
        let at = standing.step;
        let decides_now = policy.at_step(at).may_approve(who, &requester).is_ok();
        // Who may see it: the people it concerns. Anyone else is told it does not exist,
        // as for an id that does not, so ids cannot be probed.
        let viewer = if request.requester_id == who.user_id {
            "requester"
        } else if approver || decided_it {
            "approver"
        } else if who.is_admin {
            "admin"
        } else {
            tracing::info!(user = %who.user_id, request = %id, "request page refused: not a party to it");
            return Err(not_found());
        };
        let pending = request.status == RequestStatus::Pending;
        let may_cancel = viewer == "requester"
            && (request.status == RequestStatus::Pending
                || (request.status == RequestStatus::Approved
                    && request.extends_request_id.is_none()));
        // An extension shows the access it makes longer.
        let grants_of = request.extends_request_id.as_deref().unwrap_or(id.as_str());
        let grants = store::grants_for_request(&mut conn, grants_of)
            .await
            .or_internal()?;
        // Its history includes its extensions' (asked, decided).
        let mut subjects = vec![id.as_str().to_owned()];
        subjects.extend(grants.iter().map(|g| g.access_grant_id.clone()));
        subjects.extend(
            store::extensions_of(&mut conn, id.as_str())
                .await
                .or_internal()?
                .into_iter()
                .map(|r| r.access_request_id),
        );
        let grants = if who.is_admin {
            self.flag_trouble(&mut conn, grants).await
        } else {
            self.grant_views(&mut conn, grants).await
        }
        .or_internal()?;
        let subjects: Vec<&str> = subjects.iter().map(String::as_str).collect();
        let history = store::audit_of_subjects(&mut conn, &subjects, HISTORY_LIMIT)
            .await
            .or_internal()?
            .into_iter()
            // Refused attempts on it are for admins (the audit page shows them too).
            .filter(|a| who.is_admin || !a.action.starts_with("denied."))
            .map(audit_view)
            .collect();
        // The other parts of its bundle: the requester's business, and the admins'.
        let bundle = match viewer {
            "requester" | "admin" => self.bundle_parts(&mut conn, &request).await.or_internal()?,
            _ => Vec::new(),
        };
        // Exactly what approving grants (or granted): each target, the window and how
        // long a session can outlast it.
        let mut targets = self
            .target_views(&mut conn, &entitlement)
            .await
            .or_internal()?;
        let (window, tails) = super::decisions::window_and_tails(&request, &targets);
        for (t, tail) in targets.iter_mut().zip(tails) {
            t.tail = tail;
        }
        let mut view = self
            .request_views(&mut conn, vec![request])
            .await
            .or_internal()?
            .pop()
            .ok_or_else(not_found)?;
        view.targets = targets;
        view.window = pending.then_some(window);
        if pending {
            approval::show(&mut view, &policy, &standing);
        }
        if !matches!(viewer, "requester" | "admin") {
            view.bundle = None;
        }
        if pending && viewer == "requester" {
            view.deciders = Some(Self::deciders(&entitlement, who, manager_known, at));
        }
        Ok(RequestDetail {
            request: view,
            approval: Self::describe_policy(&entitlement),
            grants,
            history,
            may_decide: pending && decides_now && !decided_it,
            reauth_needed: false,
            may_cancel,
            viewer: viewer.to_owned(),
            bundle,
        })
    }

    /// The request's entitlement (its policy as configured) and requester.
    async fn detail_parties(
        &self,
        conn: &mut AnyConnection,
        request: &RequestRow,
    ) -> Result<(Entitlement, Principal), AppError> {
        let entitlement = store::get_entitlement(conn, &request.entitlement_id)
            .await
            .or_internal()?
            .with_context(|| format!("request {} has no entitlement", request.access_request_id))
            .or_internal()?;
        let requester = store::get_user(conn, &request.requester_id)
            .await
            .or_internal()?
            .context("request without requester")
            .or_internal()?;
        Ok((entitlement, requester))
    }
}

/// An audit event as the pages show it.
pub(super) fn audit_view(a: AuditRow) -> AuditView {
    AuditView {
        seq: a.seq,
        at: a.at.format_utc(),
        actor: a.actor_name,
        action: a.action,
        subject: format!("{} {}", a.subject_kind, a.subject_id),
        entitlement: a.entitlement_id.unwrap_or_default(),
        detail: a.detail,
    }
}
