//! The admin page for entitlements (`/admin/entitlements`): each one's targets, who may
//! ask and who decides, its limits, its live grants and newest requests, and every kept
//! version with what changed (issue #13; versions: issue #14, item 7).

use super::*;

/// Requests listed per entitlement.
const RECENT: i64 = 10;

impl PortalService {
    pub(super) async fn admin_entitlements(
        &self,
        who: &Principal,
    ) -> Result<Vec<EntitlementDetailView>, AppError> {
        let Admin(_) = self.admin(who, "admin_entitlements").await?;
        let mut conn = self.store.conn().await.or_internal()?;
        let retired = store::retired_entitlements(&mut conn).await.or_internal()?;
        let mut all = store::all_entitlements(&mut conn).await.or_internal()?;
        // Live ones first, then by name (the store gives them by name).
        all.sort_by_key(|e| retired.contains_key(&e.id));
        let mut views = Vec::with_capacity(all.len());
        for e in all {
            let recent = store::recent_requests_for(&mut conn, &e.id, RECENT)
                .await
                .or_internal()?;
            let people = self
                .users_by_id(&mut conn, recent.iter().map(|r| r.requester_id.as_str()))
                .await
                .or_internal()?;
            let versions = store::entitlement_versions(&mut conn, &e.id)
                .await
                .or_internal()?;
            views.push(EntitlementDetailView {
                targets: self.target_views(&mut conn, &e).await.or_internal()?,
                live_grants: store::live_grants_of_entitlement(&mut conn, &e.id)
                    .await
                    .or_internal()? as usize,
                recent: recent
                    .into_iter()
                    .map(|r| RequestBriefView {
                        requester: people
                            .get(&r.requester_id)
                            .map_or_else(|| r.requester_id.clone(), |p| p.display_name.clone()),
                        status: r.status.to_string(),
                        created_at: r.created_at.format_utc(),
                        id: r.access_request_id,
                    })
                    .collect(),
                versions: version_views(&versions),
                retired_at: retired.get(&e.id).map(|t| t.format_utc()),
                eligible: eligible_words(&e),
                approval: Self::describe_policy(&e),
                limits: limit_words(&e),
                id: e.id,
                name: e.name,
                description: e.description,
            });
        }
        Ok(views)
    }
}

/// "groups engineering, security; people alice@example.com".
fn eligible_words(e: &Entitlement) -> String {
    let p = &e.policy;
    let mut parts = Vec::new();
    if !p.eligible_groups.is_empty() {
        parts.push(format!("groups {}", p.eligible_groups.join(", ")));
    }
    if !p.eligible_users.is_empty() {
        parts.push(format!("people {}", p.eligible_users.join(", ")));
    }
    if parts.is_empty() {
        "nobody (no groups or people named)".into()
    } else {
        parts.join("; ")
    }
}

/// The policy's limits, one line each, in the words of the request form.
fn limit_words(e: &Entitlement) -> Vec<String> {
    let p = &e.policy;
    let secs = |s: u64| format_duration(Duration::from_secs(s));
    let mut lines = vec![
        format!(
            "Up to {} at a time (default {})",
            secs(p.max_duration_secs),
            secs(p.default_duration_secs)
        ),
        format!("Up to {} with extensions", format_duration(p.max_total())),
    ];
    if p.extension_auto_approve_secs > 0 {
        lines.push(format!(
            "Extensions up to {} approve themselves",
            secs(p.extension_auto_approve_secs)
        ));
    }
    if p.require_ticket {
        lines.push(match &p.ticket_example {
            Some(example) => format!("A ticket is required, like {example}"),
            None => "A ticket is required".into(),
        });
    }
    if p.break_glass {
        lines.push(format!(
            "Break-glass: granted at once, each use reviewed by an admin within {}",
            secs(p.review_within_secs)
        ));
    } else if !p.auto_approve {
        lines.push(format!(
            "Undecided requests time out after {}",
            secs(p.decision_timeout_secs)
        ));
    }
    if p.escalate_after_secs > 0 {
        lines.push(format!(
            "Escalated after {} without a decision",
            secs(p.escalate_after_secs)
        ));
    }
    if !p.chat.is_empty() {
        lines.push(format!("Told in chat: {}", p.chat.join(", ")));
    }
    lines
}

/// Each version (newest first) with its difference from the one before it.
fn version_views(versions: &[store::EntitlementVersionRow]) -> Vec<EntitlementVersionView> {
    versions
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let before = versions.get(i + 1).map_or("", |b| b.definition.as_str());
            EntitlementVersionView {
                version: v.version,
                at: v.created_at.format_utc(),
                change: v.change.clone(),
                by: v.changed_by.clone(),
                diff: line_diff(before, &v.definition)
                    .into_iter()
                    .map(|(kind, text)| DiffLineView {
                        kind: kind.into(),
                        text: text.into(),
                    })
                    .collect(),
            }
        })
        .collect()
}

/// The lines of `new` against `old`: `added`, `removed`, and one `same` line of context
/// around each change (a longest common subsequence; definitions are a few dozen lines).
pub(crate) fn line_diff<'a>(old: &'a str, new: &'a str) -> Vec<(&'static str, &'a str)> {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    // lcs[i][j]: the common subsequence of a[i..] and b[j..].
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut all = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            all.push(("same", a[i]));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            all.push(("removed", a[i]));
            i += 1;
        } else {
            all.push(("added", b[j]));
            j += 1;
        }
    }
    // Keep the changes and the lines right next to them.
    let near_change = |k: usize| {
        (k.saturating_sub(1)..=(k + 1).min(all.len().saturating_sub(1))).any(|n| all[n].0 != "same")
    };
    (0..all.len())
        .filter(|&k| near_change(k))
        .map(|k| all[k])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::line_diff;

    #[test]
    fn a_diff_shows_what_changed_with_a_line_around_it() {
        let old = "a\nb\nc\nd\ne\nf";
        let new = "a\nb\nC\nd\ne\nf\ng";
        assert_eq!(
            line_diff(old, new),
            vec![
                ("same", "b"),
                ("removed", "c"),
                ("added", "C"),
                ("same", "d"),
                ("same", "f"),
                ("added", "g"),
            ]
        );
        // The first version: every line is new.
        assert_eq!(line_diff("", "x\ny"), vec![("added", "x"), ("added", "y")]);
        assert!(line_diff(old, old).is_empty());
    }
}
