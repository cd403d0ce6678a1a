//! Bundles (issue #12, item 10): several entitlements asked for at once, with one
//! justification, one duration, one ticket and one start.
//!
//! A bundle is one request per entitlement, written in one transaction and tied by a
//! `bundle_id`: all are made or none is. Each is then decided by its own entitlement's
//! policy, exactly as if it had been asked alone (the README says why: merging policies
//! would let one entitlement's approvers grant another's access, or name nobody). The
//! pages show the parts together.

use super::requests::new_request;
use super::*;
use std::collections::BTreeSet;

/// The most entitlements one bundle may ask for.
pub const MAX_BUNDLE: usize = 5;

/// What a bundle's form names "for" in its errors (the request cards name their entitlement).
pub const BUNDLE_FORM: &str = "bundle";

impl PortalService {
    pub(super) async fn create_bundle(
        &self,
        who: &Principal,
        entitlement_ids: &[String],
        draft: RequestDraft,
    ) -> Result<Vec<String>, AppError> {
        let now = self.now();
        let ids = parse_ids(entitlement_ids)?;
        // Before the transaction: no AWS call while holding the database.
        self.known_to_aws(who, &ids[0]).await?;
        let mut tx = self.store.begin().await.or_internal()?;
        self.within_hourly_limit_for(&mut tx, who, ids.len(), now)
            .await?;
        let start = app::domain::time::parse_start(&draft.starts, now, self.start_horizon);
        let mut errors = Vec::new();
        if let Err(m) = &start {
            errors.push(FieldError::new("starts", m.clone()));
        }
        let mut parts = Vec::new();
        for id in &ids {
            let Some(entitlement) = store::get_entitlement(&mut tx, id.as_str())
                .await
                .or_internal()?
            else {
                errors.push(FieldError::new(
                    "entitlements",
                    format!("unknown entitlement {id}"),
                ));
                continue;
            };
            // Eligibility first: nothing about an entitlement one may not ask for is told.
            if !entitlement.policy.is_eligible(who) {
                drop(tx);
                let reason = format!("you are not eligible for {id}");
                return Err(self.deny(who, "request", id.as_str(), &reason).await);
            }
            if let Some(at) = store::entitlement_retired_at(&mut tx, id.as_str())
                .await
                .or_internal()?
            {
                errors.push(FieldError::new(
                    "entitlements",
                    format!(
                        "{} was retired on {}: it can no longer be requested",
                        entitlement.name,
                        at.format_utc()
                    ),
                ));
                continue;
            }
            if entitlement.policy.break_glass {
                errors.push(FieldError::new(
                    "entitlements",
                    format!("{} is break-glass: ask for it on its own", entitlement.name),
                ));
                continue;
            }
            // Each part's own checks; a message says which entitlement it is about.
            match entitlement.policy.validate(&draft, self.min_duration) {
                Ok(valid) => parts.push((entitlement, valid)),
                Err(fields) => errors.extend(fields.into_iter().map(|f| {
                    let message = format!("{}: {}", entitlement.name, f.message);
                    FieldError::new(&f.field, message)
                })),
            }
        }
        let start = match start {
            Ok(start) if errors.is_empty() => start,
            _ => {
                let mut errors = merged(errors);
                errors.push(FieldError::new("for", BUNDLE_FORM));
                return Err(AppError::Invalid(errors));
            }
        };
        let bundle_id = store::new_id();
        let count = parts.len();
        let mut made = Vec::new();
        for (entitlement, valid) in &parts {
            let mut request = new_request(who, entitlement, valid, None, now);
            request.bundle_id = Some(bundle_id.clone());
            // The bundle by its id and size: its parts' names are the requester's business
            // (an approver of this part reads its history).
            let mut detail = format!(
                "for {} because: {} (one of {count} asked together, bundle {bundle_id})",
                valid.duration, request.justification
            );
            if let Some(at) = start {
                request.starts_at = at;
                detail = format!("from {}, {detail}", at.format_utc());
            }
            let approves_itself = entitlement.policy.approves_itself();
            made.push(request.access_request_id.clone());
            self.write_request(
                &mut tx,
                &request,
                entitlement,
                who,
                ("request.created", detail),
                approves_itself,
                now,
            )
            .await
            .or_internal()?;
        }
        tx.commit().await.map_err(|e| internal(e.into()))?;
        self.wake.notify_one();
        tracing::info!(user = %who.user_id, bundle = %bundle_id, parts = made.len(), "bundle requested");
        Ok(made)
    }

    /// The other requests of a request's bundle, for its page.
    pub(super) async fn bundle_parts(
        &self,
        conn: &mut AnyConnection,
        request: &RequestRow,
    ) -> anyhow::Result<Vec<BundlePartView>> {
        let Some(bundle) = request.bundle_id.as_deref() else {
            return Ok(Vec::new());
        };
        let ents = self.entitlements_by_id(conn).await?;
        Ok(store::requests_in_bundle(conn, bundle)
            .await?
            .into_iter()
            .filter(|r| r.access_request_id != request.access_request_id)
            .map(|r| BundlePartView {
                entitlement_name: ents
                    .get(&r.entitlement_id)
                    .map(|e| e.name.clone())
                    .unwrap_or_else(|| r.entitlement_id.clone()),
                id: r.access_request_id,
                status: r.status.to_string(),
            })
            .collect())
    }
}

/// One error per field, its messages joined (a field shows one message: each part's is
/// kept, in order).
fn merged(errors: Vec<FieldError>) -> Vec<FieldError> {
    let mut out: Vec<FieldError> = Vec::new();
    for e in errors {
        match out.iter_mut().find(|o| o.field == e.field) {
            Some(o) => o.message = format!("{}; {}", o.message, e.message),
            None => out.push(e),
        }
    }
    out
}

/// The entitlements a bundle names: 2 to [`MAX_BUNDLE`], each once, each well-formed.
fn parse_ids(raw: &[String]) -> Result<Vec<EntitlementId>, AppError> {
    let invalid = |m: String| {
        AppError::Invalid(vec![
            FieldError::new("entitlements", m),
            FieldError::new("for", BUNDLE_FORM),
        ])
    };
    let mut seen = BTreeSet::new();
    let mut ids = Vec::new();
    for r in raw {
        let id = EntitlementId::parse(r).map_err(|m| invalid(m.to_string()))?;
        if !seen.insert(id.as_str().to_owned()) {
            return Err(invalid(format!("{id} is named twice")));
        }
        ids.push(id);
    }
    match ids.len() {
        0 | 1 => Err(invalid(
            "choose at least two entitlements (one is asked for on its own card)".into(),
        )),
        n if n > MAX_BUNDLE => Err(invalid(format!(
            "at most {MAX_BUNDLE} entitlements at once ({n} chosen)"
        ))),
        _ => Ok(ids),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn message(r: Result<Vec<EntitlementId>, AppError>) -> String {
        match r {
            Err(AppError::Invalid(f)) => {
                assert!(f
                    .iter()
                    .any(|f| f.field == "for" && f.message == BUNDLE_FORM));
                f[0].message.clone()
            }
            other => panic!("accepted: {other:?}"),
        }
    }

    #[test]
    fn errors_of_one_field_are_joined_in_order() {
        let m = merged(vec![
            FieldError::new("duration", "A: too long"),
            FieldError::new("ticket", "B: needed"),
            FieldError::new("duration", "C: too long"),
        ]);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].message, "A: too long; C: too long");
        assert_eq!(m[1].field, "ticket");
    }

    #[test]
    fn a_bundle_names_two_to_five_distinct_entitlements() {
        assert_eq!(parse_ids(&ids(&["a-one", "b-two"])).unwrap().len(), 2);
        assert!(message(parse_ids(&ids(&["a-one"]))).contains("at least two"));
        assert!(message(parse_ids(&[])).contains("at least two"));
        assert!(message(parse_ids(&ids(&["a-one", "a-one"]))).contains("named twice"));
        let six = ids(&["a", "b", "c", "d", "e", "f"]);
        assert!(message(parse_ids(&six)).contains("at most 5"));
        assert!(!message(parse_ids(&ids(&["a-one", "Bad Id!"]))).is_empty());
    }
}
