//! Decisions: the approval queue, approving or rejecting (invariants 5 and 9), and what
//! an approval sets in motion.

use super::*;

/// Why an extension is closed when approved: its access is no longer active.
const EXTENDS_NOTHING: &str = "the access it would extend has already ended";

/// What a verdict does to a request, decided before anything is written.
struct Decided {
    to: RequestStatus,
    complete: bool,
    /// The approval step the decision was made at (0-based).
    step: usize,
    /// The step an approval moved the request on to (it completed `step`, not the last).
    next: Option<usize>,
    /// Everyone who has decided the request, this decision included (told nothing more).
    deciders: Vec<String>,
    /// Why a complete approval was refused (the requester is no longer eligible).
    refused: Option<String>,
}

impl PortalService {
    pub(super) async fn approvals(&self, who: &Principal) -> Result<Approvals, AppError> {
        let mut conn = self.store.conn().await.or_internal()?;
        let ents = self.entitlements_by_id(&mut conn).await.or_internal()?;
        let pending = store::requests_with_status(&mut conn, RequestStatus::Pending)
            .await
            .or_internal()?;
        let users = self
            .users_by_id(&mut conn, pending.iter().map(|r| r.requester_id.as_str()))
            .await
            .or_internal()?;
        let mine: Vec<String> = store::decisions_by_approver(&mut conn, &who.user_id)
            .await
            .or_internal()?
            .into_iter()
            .map(|d| d.access_request_id)
            .collect();
        // The step each request waits at, from the approvals recorded (deciding counts
        // them again against current rights).
        let decisions_of = store::decisions_for_requests(
            &mut conn,
            pending.iter().map(|r| r.access_request_id.as_str()),
        )
        .await
        .or_internal()?;
        // Everyone who approved any of them, read once: an approval counts only while its
        // approver keeps the right, here as when deciding.
        let approvers = store::users_by_ids(
            &mut conn,
            decisions_of
                .values()
                .flatten()
                .map(|d| d.approver_id.as_str()),
        )
        .await
        .or_internal()?;
        let mut queue = Vec::new();
        let mut standings = Vec::new();
        // Whether each requester's manager is known, asked once per requester, and only
        // for policies with a manager fallback.
        let mut manager_known: HashMap<String, bool> = HashMap::new();
        for r in pending {
            let (Some(e), Some(requester)) =
                (ents.get(&r.entitlement_id), users.get(&r.requester_id))
            else {
                continue;
            };
            // Escalated requests: the rule they were escalated to may decide too.
            let policy = e.policy.with_escalation(r.escalation().as_ref());
            let policy = if policy.has_manager_fallback() {
                let known = match manager_known.get(&requester.user_id) {
                    Some(k) => *k,
                    None => {
                        let k = notify::manager_known(&mut conn, requester)
                            .await
                            .or_internal()?;
                        manager_known.insert(requester.user_id.clone(), k);
                        k
                    }
                };
                policy.for_requester(known)
            } else {
                policy
            };
            let decisions = decisions_of
                .get(&r.access_request_id)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let counted = approval::counted_with(&policy, requester, decisions, &approvers);
            let at = policy.progress(&counted);
            if policy.at_step(at.step).may_approve(who, requester).is_ok()
                && !mine.contains(&r.access_request_id)
            {
                standings.push((policy, at));
                queue.push(r);
            }
        }
        let mut pending = self
            .request_views(&mut conn, queue.clone())
            .await
            .or_internal()?;
        // What the requester asked for before, for the person deciding.
        self.add_history(&mut conn, &queue, &mut pending)
            .await
            .or_internal()?;
        // Exactly what approving would grant, read once per entitlement on the page.
        let mut targets: HashMap<String, Vec<TargetView>> = HashMap::new();
        for (view, row) in pending.iter_mut().zip(&queue) {
            if !targets.contains_key(&view.entitlement_id) {
                if let Some(e) = ents.get(&view.entitlement_id) {
                    let t = self.target_views(&mut conn, e).await.or_internal()?;
                    targets.insert(e.id.clone(), t);
                }
            }
            view.targets = targets
                .get(&view.entitlement_id)
                .cloned()
                .unwrap_or_default();
            let (window, tails) = window_and_tails(row, &view.targets);
            view.window = Some(window);
            for (t, tail) in view.targets.iter_mut().zip(tails) {
                t.tail = tail;
            }
        }
        for (view, (policy, at)) in pending.iter_mut().zip(&standings) {
            approval::show(view, policy, at);
            // Other parts of a bundle are the requester's business.
            view.bundle = None;
        }
        let mut by_id = store::requests_by_ids(&mut conn, mine.iter().map(String::as_str))
            .await
            .or_internal()?;
        let decided_requests: Vec<_> = mine.iter().filter_map(|id| by_id.remove(id)).collect();
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
        let (entitlement, requester) = Self::parties(&mut tx, &request).await.or_internal()?;
        // A retired entitlement grants nothing new: its pending requests may only be
        // turned down (or time out).
        if approve {
            if let Some(at) = store::entitlement_retired_at(&mut tx, &entitlement.id)
                .await
                .or_internal()?
            {
                return Err(AppError::Conflict(format!(
                    "{} was retired on {}: its requests can no longer be approved",
                    entitlement.name,
                    at.format_utc()
                )));
            }
        }
        let standing = approval::standing(&mut tx, id.as_str(), &entitlement.policy, &requester)
            .await
            .or_internal()?;
        // Invariant 5: rights checked now, against the latest claims of both people, at the
        // step the request waits at (any step, for a request no longer pending: it is
        // refused below as already decided).
        let pending = request.status == RequestStatus::Pending;
        let at = standing.progress.step;
        let rights = match pending {
            true => entitlement.policy.at_step(at).may_approve(who, &requester),
            false => entitlement.policy.may_approve(who, &requester),
        };
        if let Err(denied) = rights {
            let steps = entitlement.policy.approval_steps().len();
            let later = (at + 1..steps).any(|i| {
                entitlement
                    .policy
                    .at_step(i)
                    .may_approve(who, &requester)
                    .is_ok()
            });
            if pending && later {
                let step = entitlement.policy.step_label(at).unwrap_or_default();
                return Err(AppError::Conflict(format!(
                    "This request waits at {step}: you decide at a later step, once the \
                     earlier ones are complete."
                )));
            }
            drop(tx);
            let reason = match denied {
                Denied::OwnRequest => "you cannot decide your own request",
                _ => "you are not an approver for this entitlement",
            };
            return Err(self.deny(who, "decide", id.as_str(), reason).await);
        }
        let decided = self
            .outcome(
                &mut tx,
                &request,
                &entitlement,
                &requester,
                &standing,
                who,
                approve,
            )
            .await?;
        let verdict = if approve {
            Verdict::Approved
        } else {
            Verdict::Rejected
        };
        let result: anyhow::Result<()> = async {
            self.record(
                &mut tx,
                &request,
                &entitlement,
                &requester,
                who,
                verdict,
                &comment,
                &decided,
                now,
            )
            .await?;
            self.follow_up(
                &mut tx,
                &request,
                &entitlement,
                &requester,
                who,
                &comment,
                &decided,
                now,
            )
            .await?;
            tx.commit().await?;
            Ok(())
        }
        .await;
        result.or_internal()?;
        self.wake.notify_one();
        match decided.refused {
            Some(reason) => Err(AppError::Conflict(format!(
                "Not approved: {reason}. The request was closed."
            ))),
            None => Ok(()),
        }
    }

    /// The entitlement and the requester of a request, as they are now.
    /// The policy is the one that applies to this request now (a manager fallback takes
    /// effect while their manager is not known; once escalated, the escalation rule
    /// decides too).
    async fn parties(
        conn: &mut AnyConnection,
        request: &RequestRow,
    ) -> anyhow::Result<(Entitlement, Principal)> {
        let mut entitlement = store::get_entitlement(conn, &request.entitlement_id)
            .await?
            .with_context(|| format!("request {} has no entitlement", request.access_request_id))?;
        let requester = store::get_user(conn, &request.requester_id)
            .await?
            .context("request without requester")?;
        let escalated = entitlement
            .policy
            .with_escalation(request.escalation().as_ref());
        entitlement.policy = notify::policy_for(conn, &escalated, &requester).await?;
        Ok((entitlement, requester))
    }

    /// What this verdict does to the request: its next status, whether the approvals are
    /// now complete, and the reason when a complete approval is refused because the
    /// requester lost eligibility (invariant 5). A second decision by the same person, or
    /// one on a request already decided, changes nothing (invariant 9).
    #[allow(clippy::too_many_arguments)]
    async fn outcome(
        &self,
        conn: &mut AnyConnection,
        request: &RequestRow,
        entitlement: &Entitlement,
        requester: &Principal,
        standing: &approval::Standing,
        who: &Principal,
        approve: bool,
    ) -> Result<Decided, AppError> {
        let decisions = &standing.decisions;
        if standing.decided_by(&who.user_id) {
            return Err(AppError::Conflict(
                "You have already decided this request.".into(),
            ));
        }
        let from = request.status;
        // Approvals are counted again now, step by step, against each approver's current
        // rights (`approval::counted`); this one counts at the step the request waits at.
        let step = standing.progress.step;
        let mut counted = standing.counted.clone();
        if let Some(n) = counted.get_mut(step).filter(|_| approve) {
            *n += 1;
        }
        let progress = entitlement.policy.progress(&counted);
        let complete = approve && progress.complete();
        let next = (approve && !complete && progress.step > step).then_some(progress.step);
        let event = if approve {
            RequestEvent::Approval { complete }
        } else {
            RequestEvent::Rejection
        };
        let Ok(to) = from.apply(event) else {
            let last = decisions
                .last()
                .map(|d| d.approver_id.clone())
                .unwrap_or_default();
            let by = store::get_user(conn, &last)
                .await
                .ok()
                .flatten()
                .map(|u| format!(" by {}", u.display_name))
                .unwrap_or_default();
            return Err(AppError::Conflict(format!(
                "This request was already {from}{by}; nothing changed."
            )));
        };
        let mut refused = complete
            .then(|| entitlement.no_longer_eligible(requester))
            .flatten();
        if let (true, None, Some(original)) =
            (complete, &refused, request.extends_request_id.as_deref())
        {
            let live = store::grants_for_request(conn, original)
                .await
                .or_internal()?
                .iter()
                .any(|g| g.status == GrantStatus::Active);
            if !live {
                refused = Some(EXTENDS_NOTHING.into());
            }
        }
        let to = match refused {
            Some(_) => from
                .apply(RequestEvent::Rejection)
                .or_internal_transition()?,
            None => to,
        };
        let mut deciders = standing.deciders();
        deciders.push(who.user_id.clone());
        Ok(Decided {
            to,
            complete,
            step,
            next,
            deciders,
            refused,
        })
    }

    /// The decision, the request's new status and the audit event.
    #[allow(clippy::too_many_arguments)]
    async fn record(
        &self,
        tx: &mut store::Tx,
        request: &RequestRow,
        entitlement: &Entitlement,
        requester: &Principal,
        who: &Principal,
        verdict: Verdict,
        comment: &Comment,
        decided: &Decided,
        now: Timestamp,
    ) -> anyhow::Result<()> {
        let id = &request.access_request_id;
        store::insert_decision(
            tx,
            &store::DecisionRow {
                decision_id: store::new_id(),
                access_request_id: id.clone(),
                approver_id: who.user_id.clone(),
                verdict,
                comment: comment.to_string(),
                created_at: now,
                step: decided.step as i64,
            },
        )
        .await?;
        store::set_request_status(tx, id, decided.to, now).await?;
        let approve = verdict == Verdict::Approved;
        let action = match (&decided.refused, approve, decided.complete) {
            (Some(r), _, _) if r == EXTENDS_NOTHING => "request.refused_ended",
            (Some(_), _, _) => "request.refused_ineligible",
            (None, true, true) => "request.approved",
            (None, true, false) => "request.approval_recorded",
            (None, false, _) => "request.rejected",
        };
        let said = if approve && decided.refused.is_none() {
            "approved"
        } else {
            "rejected"
        };
        // "approved at step 1 of 2: Manager" when approval takes steps.
        let said = match entitlement.policy.step_label(decided.step) {
            Some(step) => format!("{said} at {}", step.to_lowercase()),
            None => said.to_owned(),
        };
        audit::audit(
            tx,
            &Actor::of(who),
            Event {
                action,
                person_id: Some(&requester.user_id),
                subject_kind: "request",
                subject_id: id,
                entitlement_id: Some(&entitlement.id),
                detail: decided
                    .refused
                    .clone()
                    .unwrap_or_else(|| format!("{said}: {comment}")),
            },
            now,
        )
        .await
    }

    /// What a decided request sets in motion: grants (approved) or the requester told
    /// (rejected), and the other approvers told that nothing is needed from them.
    #[allow(clippy::too_many_arguments)]
    async fn follow_up(
        &self,
        tx: &mut store::Tx,
        request: &RequestRow,
        entitlement: &Entitlement,
        requester: &Principal,
        who: &Principal,
        comment: &Comment,
        decided: &Decided,
        now: Timestamp,
    ) -> anyhow::Result<()> {
        let id = &request.access_request_id;
        match decided.to {
            RequestStatus::Approved => {
                store::delete_jobs_for(tx, id, JobKind::DecisionTimeout).await?;
                self.approve_complete(tx, request, entitlement, requester, Some(who), now)
                    .await?;
            }
            RequestStatus::Rejected => {
                store::delete_jobs_for(tx, id, JobKind::DecisionTimeout).await?;
                let why = decided
                    .refused
                    .clone()
                    .unwrap_or_else(|| comment.to_string());
                let mail = notify::request_rejected(
                    &self.public_url,
                    id,
                    &entitlement.name,
                    &who.display_name,
                    &why,
                    &request.justification,
                );
                notify::queue(tx, &requester.email, &mail, now).await?;
                let chat = notify::chat_decided(
                    &self.public_url,
                    id,
                    &requester.display_name,
                    &entitlement.name,
                    &who.display_name,
                    RequestStatus::Rejected,
                );
                notify::chat(tx, &entitlement.policy, &chat, now).await?;
            }
            _ => {}
        }
        if decided.to == RequestStatus::Pending {
            if let Some(next) = decided.next {
                return self
                    .ask_next_step(tx, request, entitlement, requester, decided, next, now)
                    .await;
            }
            return Ok(());
        }
        notify::forget_approval_nudges(tx, id).await?;
        // Tell the other approvers of this step someone decided, so they need not look
        // (not those who decided it themselves, at this step or an earlier one).
        for other in notify::approvers_of(tx, &entitlement.policy, requester, decided.step).await? {
            if other
                .user_id
                .as_ref()
                .is_some_and(|u| decided.deciders.contains(u))
            {
                continue;
            }
            let mail = notify::already_decided(
                &self.public_url,
                id,
                &entitlement.name,
                &requester.display_name,
                &who.display_name,
                decided.to,
                &request.justification,
            );
            notify::queue(tx, &other.email, &mail, now).await?;
        }
        Ok(())
    }

    /// An approval completed a step and the next one waits: its approvers are told (not
    /// those who decided already, nor the requester), and the step is audited.
    #[allow(clippy::too_many_arguments)]
    async fn ask_next_step(
        &self,
        tx: &mut store::Tx,
        request: &RequestRow,
        entitlement: &Entitlement,
        requester: &Principal,
        decided: &Decided,
        next: usize,
        now: Timestamp,
    ) -> anyhow::Result<()> {
        let id = &request.access_request_id;
        let label = entitlement.policy.step_label(next).unwrap_or_default();
        let mail = notify::approval_mail(
            notify::Nudge::Step(&label),
            request,
            requester,
            &entitlement.name,
            &self.public_url,
            now,
        );
        let told = notify::approvers_of(tx, &entitlement.policy, requester, next).await?;
        for r in told {
            if r.user_id
                .as_ref()
                .is_some_and(|u| decided.deciders.contains(u))
            {
                continue;
            }
            notify::queue(tx, &r.email, &mail, now).await?;
        }
        let event = Event {
            action: "request.step_started",
            person_id: Some(&requester.user_id),
            subject_kind: "request",
            subject_id: id,
            entitlement_id: Some(&entitlement.id),
            detail: format!("now waiting at {}", label.to_lowercase()),
        };
        audit::audit(tx, &Actor::system(), event, now).await
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
        if request.extends_request_id.is_some() {
            self.apply_extension(tx, request, entitlement, requester, approver, now)
                .await?;
        } else {
            let grants = crate::grants::schedule_grants(tx, request, entitlement, now).await?;
            let by = approver
                .map(|a| a.display_name.clone())
                .unwrap_or_else(|| "automatic approval".into());
            let mail = notify::request_approved(
                &self.public_url,
                &request.access_request_id,
                &entitlement.name,
                &by,
                grants.len(),
                &request.justification,
            );
            notify::queue(tx, &requester.email, &mail, now).await?;
            if !entitlement.policy.break_glass {
                let chat = notify::chat_decided(
                    &self.public_url,
                    &request.access_request_id,
                    &requester.display_name,
                    &entitlement.name,
                    &by,
                    RequestStatus::Approved,
                );
                notify::chat(tx, &entitlement.policy, &chat, now).await?;
            }
        }
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
            // Every use waits for an admin's review; unreviewed, it is escalated.
            let due = now.plus(Duration::from_secs(entitlement.policy.review_within_secs));
            let id = &request.access_request_id;
            store::insert_job(tx, JobKind::BreakGlassReview, id, due, now).await?;
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
            let chat = notify::chat_break_glass(
                &self.public_url,
                &request.access_request_id,
                &requester.display_name,
                &entitlement.name,
                &request.justification,
            );
            notify::chat(tx, &entitlement.policy, &chat, now).await?;
        }
        Ok(())
    }
}

/// The window approving `r` grants, and for each target how long a session opened just
/// before the end can stay open after it: AWS ends no open session when the assignment
/// goes, so access can outlast the grant by the permission set's session length.
pub(super) fn window_and_tails(
    r: &RequestRow,
    targets: &[TargetView],
) -> (String, Vec<Option<String>>) {
    let duration = Duration::from_secs(r.duration_secs.max(0) as u64);
    let later_start = r.starts_at > r.created_at;
    let window = if later_start {
        let end = r.starts_at.plus(duration);
        format!("{} to {}", r.starts_at.format_utc(), end.format_utc())
    } else {
        format!("{} from approval", format_duration(duration))
    };
    let tails = targets
        .iter()
        .map(|t| {
            (t.session_secs > 0).then(|| {
                let session = Duration::from_secs(t.session_secs as u64);
                if later_start {
                    let last = r.starts_at.plus(duration).plus(session);
                    format!(
                        "a session opened just before the end can stay open {} after it, until {}",
                        format_duration(session),
                        last.format_utc()
                    )
                } else {
                    format!(
                        "a session opened just before the end can stay open {} after it: {} from approval in all",
                        format_duration(session),
                        format_duration(duration + session)
                    )
                }
            })
        })
        .collect();
    (window, tails)
}
