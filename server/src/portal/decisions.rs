//! Decisions: the approval queue, approving or rejecting (invariants 5 and 9), and what
//! an approval sets in motion.

use super::*;

impl PortalService {
    pub(super) async fn approvals(&self, who: &Principal) -> Result<Approvals, AppError> {
        let mut conn = self.store.conn().await.or_internal()?;
        let ents = self.entitlements_by_id(&mut conn).await.or_internal()?;
        let users = self.users_by_id(&mut conn).await.or_internal()?;
        let pending = store::requests_with_status(&mut conn, RequestStatus::Pending)
            .await
            .or_internal()?;
        let mine: Vec<String> = store::decisions_by_approver(&mut conn, &who.user_id)
            .await
            .or_internal()?
            .into_iter()
            .map(|d| d.access_request_id)
            .collect();
        let mut queue = Vec::new();
        for r in pending {
            let (Some(e), Some(requester)) =
                (ents.get(&r.entitlement_id), users.get(&r.requester_id))
            else {
                continue;
            };
            if e.policy.may_approve(who, requester).is_ok() && !mine.contains(&r.access_request_id)
            {
                queue.push(r);
            }
        }
        let pending = self.request_views(&mut conn, queue).await.or_internal()?;
        let mut decided_requests = Vec::with_capacity(mine.len());
        for id in &mine {
            if let Some(r) = store::get_request(&mut conn, id).await.or_internal()? {
                decided_requests.push(r);
            }
        }
        // One pass over the requests, keeping only this approver's decisions (by id:
        // display names are not unique).
        let decided = self
            .request_views(&mut conn, decided_requests)
            .await
            .or_internal()?
            .into_iter()
            .flat_map(|v| v.decisions)
            .filter(|d| d.approver_id == who.user_id)
            .collect();
        Ok(Approvals { pending, decided })
    }

    pub(super) async fn decide(
        &self,
        who: &Principal,
        request_id: &str,
        approve: bool,
        comment: &str,
    ) -> Result<(), AppError> {
        let now = self.now();
        let id = Self::parse_id(request_id, "That request")?;
        let comment = Comment::parse(comment).map_err(|m| AppError::invalid("comment", m))?;
        let mut tx = self.store.begin().await.or_internal()?;
        let Some(request) = store::lock_request(&mut tx, id.as_str())
            .await
            .or_internal()?
        else {
            return Err(AppError::NotFound("That request".into()));
        };
        let entitlement = store::get_entitlement(&mut tx, &request.entitlement_id)
            .await
            .or_internal()?
            .ok_or_else(|| {
                internal(anyhow::anyhow!(
                    "request {} has no entitlement",
                    request.access_request_id
                ))
            })?;
        // Invariant 5: rights checked now, against the latest claims of both people.
        let requester = store::get_user(&mut tx, &request.requester_id)
            .await
            .or_internal()?
            .ok_or_else(|| internal(anyhow::anyhow!("request without requester")))?;
        if let Err(denied) = entitlement.policy.may_approve(who, &requester) {
            drop(tx);
            let reason = match denied {
                Denied::OwnRequest => "you cannot decide your own request",
                _ => "you are not an approver for this entitlement",
            };
            return Err(self.deny(who, "decide", id.as_str(), reason).await);
        }
        let decisions = store::decisions_for_request(&mut tx, id.as_str())
            .await
            .or_internal()?;
        if decisions.iter().any(|d| d.approver_id == who.user_id) {
            return Err(AppError::Conflict(
                "You have already decided this request.".into(),
            ));
        }
        let from = request.status;
        let approvals = decisions
            .iter()
            .filter(|d| d.verdict == Verdict::Approved)
            .count() as u32
            + u32::from(approve);
        let complete = approve && entitlement.policy.approvals_complete(approvals);
        let event = if approve {
            RequestEvent::Approval { complete }
        } else {
            RequestEvent::Rejection
        };
        let Ok(mut to) = from.apply(event) else {
            let who_decided = decisions
                .last()
                .map(|d| d.approver_id.clone())
                .unwrap_or_default();
            let by = store::get_user(&mut tx, &who_decided)
                .await
                .ok()
                .flatten()
                .map(|u| format!(" by {}", u.display_name))
                .unwrap_or_default();
            return Err(AppError::Conflict(format!(
                "This request was already {from}{by}; nothing changed."
            )));
        };
        let mut refused = None;
        if complete && !entitlement.policy.is_eligible(&requester) {
            // The requester lost eligibility since asking: refuse, with the reason on record.
            to = from
                .apply(RequestEvent::Rejection)
                .or_internal_transition()?;
            refused = Some(format!(
                "{} is no longer eligible for {} (their groups changed since the request)",
                requester.display_name, entitlement.name
            ));
        }
        let verdict = if approve && refused.is_none() {
            "approved"
        } else {
            "rejected"
        };
        let result: anyhow::Result<()> = async {
            store::insert_decision(
                &mut tx,
                &store::DecisionRow {
                    decision_id: store::new_id(),
                    access_request_id: id.to_string(),
                    approver_id: who.user_id.clone(),
                    verdict: if approve {
                        Verdict::Approved
                    } else {
                        Verdict::Rejected
                    },
                    comment: comment.to_string(),
                    created_at: now,
                },
            )
            .await?;
            store::set_request_status(&mut tx, id.as_str(), to, now).await?;
            let action = match (&refused, approve, complete) {
                (Some(_), _, _) => "request.refused_ineligible",
                (None, true, true) => "request.approved",
                (None, true, false) => "request.approval_recorded",
                (None, false, _) => "request.rejected",
            };
            audit::audit(
                &mut tx,
                &Actor::of(who),
                Event {
                    action,
                    person_id: Some(&requester.user_id),
                    subject_kind: "request",
                    subject_id: id.as_str(),
                    entitlement_id: Some(&entitlement.id),
                    detail: refused
                        .clone()
                        .unwrap_or_else(|| format!("{verdict}: {comment}")),
                },
                now,
            )
            .await?;
            if to == RequestStatus::Approved {
                store::delete_jobs_for(&mut tx, id.as_str(), JobKind::DecisionTimeout).await?;
                self.approve_complete(&mut tx, &request, &entitlement, &requester, Some(who), now)
                    .await?;
            } else if to == RequestStatus::Rejected {
                store::delete_jobs_for(&mut tx, id.as_str(), JobKind::DecisionTimeout).await?;
                let why = refused.clone().unwrap_or_else(|| comment.to_string());
                let mail = notify::request_rejected(
                    &self.public_url,
                    &entitlement.name,
                    &who.display_name,
                    &why,
                    &request.justification,
                );
                notify::queue(&mut tx, &requester.email, &mail, now).await?;
            }
            if to != RequestStatus::Pending {
                notify::forget_approval_nudges(&mut tx, id.as_str()).await?;
                // Tell the other approvers someone decided, so they need not look.
                for other in notify::approvers_of(&mut tx, &entitlement.policy, &requester).await? {
                    if other.user_id == who.user_id {
                        continue;
                    }
                    let mail = notify::already_decided(
                        &self.public_url,
                        &entitlement.name,
                        &requester.display_name,
                        &who.display_name,
                        to,
                        &request.justification,
                    );
                    notify::queue(&mut tx, &other.email, &mail, now).await?;
                }
            }
            tx.commit().await?;
            Ok(())
        }
        .await;
        result.or_internal()?;
        self.wake.notify_one();
        match refused {
            Some(reason) => Err(AppError::Conflict(format!(
                "Not approved: {reason}. The request was closed."
            ))),
            None => Ok(()),
        }
    }

    /// Finishes an approval: schedules grants, tells the requester and the other approvers.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn approve_complete(
        &self,
        tx: &mut store::Tx,
        request: &RequestRow,
        entitlement: &Entitlement,
        requester: &Principal,
        approver: Option<&Principal>,
        now: Timestamp,
    ) -> anyhow::Result<()> {
        let grants = crate::grants::schedule_grants(tx, request, entitlement, now).await?;
        let by = approver
            .map(|a| a.display_name.clone())
            .unwrap_or_else(|| "automatic approval".into());
        let mail = notify::request_approved(
            &self.public_url,
            &entitlement.name,
            &by,
            grants.len(),
            &request.justification,
        );
        notify::queue(tx, &requester.email, &mail, now).await?;
        if entitlement.policy.break_glass {
            let message = format!(
                "{} used break-glass entitlement {}: {}",
                requester.display_name, entitlement.name, request.justification
            );
            store::raise_alert(
                tx,
                store::AlertKind::BreakGlass,
                &request.access_request_id,
                &message,
                now,
            )
            .await?;
            for admin in notify::admins(tx).await? {
                let mail = notify::break_glass_used(
                    &self.public_url,
                    &entitlement.name,
                    &requester.display_name,
                    &message,
                    &request.access_request_id,
                );
                notify::queue(tx, &admin.email, &mail, now).await?;
            }
        }
        Ok(())
    }
}
