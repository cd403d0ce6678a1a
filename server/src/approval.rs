//! Where a pending request stands in its policy's approval steps (issue #12, item 1).
//!
//! The domain decides from counts (`Policy::progress`); this reads the counts. An
//! approval counts at the step it was made at, and only while its approver may still
//! decide that step by their latest sign-in: one who has since lost the right (a group
//! removed, no longer the requester's manager) no longer counts, and the request waits
//! at that step again.

use crate::store::{self, DecisionRow};
use anyhow::Result;
use app::domain::{Policy, Principal, Progress, Verdict};
use app::views::RequestView;
use sqlx::AnyConnection;
use std::collections::HashMap;

/// A pending request's standing: its decisions so far and where they leave it.
pub struct Standing {
    pub decisions: Vec<DecisionRow>,
    /// The approvals that count at each step.
    pub counted: Vec<u32>,
    pub progress: Progress,
}

impl Standing {
    /// Whether `user_id` has decided this request already (one decision per person).
    pub fn decided_by(&self, user_id: &str) -> bool {
        self.decisions.iter().any(|d| d.approver_id == user_id)
    }

    /// The people who decided, by user id.
    pub fn deciders(&self) -> Vec<String> {
        self.decisions
            .iter()
            .map(|d| d.approver_id.clone())
            .collect()
    }
}

/// The standing of request `request_id` under `policy` as it applies to it (escalation
/// and manager fallback applied by the caller).
pub async fn standing(
    conn: &mut AnyConnection,
    request_id: &str,
    policy: &Policy,
    requester: &Principal,
) -> Result<Standing> {
    let decisions = store::decisions_for_request(conn, request_id).await?;
    let counted = counted(conn, policy, requester, &decisions).await?;
    Ok(Standing {
        progress: policy.progress(&counted),
        counted,
        decisions,
    })
}

/// The approvals that count at each step, against each approver's current rights.
pub async fn counted(
    conn: &mut AnyConnection,
    policy: &Policy,
    requester: &Principal,
    decisions: &[DecisionRow],
) -> Result<Vec<u32>> {
    let approvals: Vec<&DecisionRow> = decisions
        .iter()
        .filter(|d| d.verdict == Verdict::Approved)
        .collect();
    let approvers =
        store::users_by_ids(conn, approvals.iter().map(|d| d.approver_id.as_str())).await?;
    Ok(counted_with(policy, requester, decisions, &approvers))
}

/// [`counted`] with the approvers already read (by user id): a page reads them once for
/// all its rows.
pub fn counted_with(
    policy: &Policy,
    requester: &Principal,
    decisions: &[DecisionRow],
    approvers: &HashMap<String, Principal>,
) -> Vec<u32> {
    let steps = policy.approval_steps().len();
    let mut counted = vec![0u32; steps];
    for d in decisions.iter().filter(|d| d.verdict == Verdict::Approved) {
        let step = usize::try_from(d.step).unwrap_or(usize::MAX);
        let still = step < steps
            && approvers
                .get(&d.approver_id)
                .is_some_and(|a| policy.at_step(step).may_approve(a, requester).is_ok());
        if still {
            counted[step] += 1;
        } else {
            tracing::info!(
                request = %d.access_request_id,
                approver = %d.approver_id,
                step = d.step,
                "an earlier approval no longer counts: the approver has lost the right, or the step is gone"
            );
        }
    }
    counted
}

/// Puts a pending request's standing on its view: the step it waits at and its approvals
/// there, as deciding counts them (the views alone count what is recorded).
pub fn show(view: &mut RequestView, policy: &Policy, at: &Progress) {
    if at.complete() {
        return;
    }
    view.step = policy.step_label(at.step);
    view.approvals = at.approvals;
    view.approvals_required = at.needed.max(1);
}

/// The approvals recorded at each step, as the pages show them (no rights checked again:
/// deciding does that).
pub fn recorded(policy: &Policy, decisions: &[DecisionRow]) -> Vec<u32> {
    let mut counted = vec![0u32; policy.approval_steps().len()];
    for d in decisions.iter().filter(|d| d.verdict == Verdict::Approved) {
        if let Some(n) = usize::try_from(d.step)
            .ok()
            .and_then(|s| counted.get_mut(s))
        {
            *n += 1;
        }
    }
    counted
}
