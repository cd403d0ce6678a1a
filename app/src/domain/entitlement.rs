//! What can be requested: one or more targets (account or OU x permission set) and the
//! policy that says who may ask and who decides. Declared in the configuration file
//! (`[[entitlements]]`) and stored by the server.

use super::policy::{Policy, Principal};
use super::types::{EntitlementId, Target};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entitlement {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub targets: Vec<Target>,
    pub policy: Policy,
}

/// Why an entitlement cannot be offered, worded for the operator who wrote it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidEntitlement(pub String);

impl Entitlement {
    /// Invariant 5: eligibility again, against the requester's latest claims (at decision
    /// time and at grant time). The reason, worded for people, when they are no longer
    /// eligible.
    pub fn no_longer_eligible(&self, requester: &Principal) -> Option<String> {
        (!self.policy.is_eligible(requester)).then(|| {
            format!(
                "{} is no longer eligible for {} (their groups changed since the request)",
                requester.display_name, self.name
            )
        })
    }

    /// Refuses an entitlement nobody could use, or that grants nothing.
    pub fn check(&self) -> Result<(), InvalidEntitlement> {
        let id = &self.id;
        let fail = |why: String| Err(InvalidEntitlement(format!("entitlement {id}: {why}")));
        if let Err(e) = EntitlementId::parse(id) {
            return Err(InvalidEntitlement(format!("entitlement id {id:?}: {e}")));
        }
        if self.name.trim().is_empty() {
            return fail("the name is empty".into());
        }
        if self.targets.is_empty() {
            return fail(
                "no targets (give at least one account or OU with a permission set)".into(),
            );
        }
        let p = &self.policy;
        if p.eligible_groups.is_empty() && p.eligible_users.is_empty() {
            return fail(
                "nobody is eligible (set policy.eligible_groups or policy.eligible_users)".into(),
            );
        }
        if p.max_duration_secs == 0 || p.default_duration_secs > p.max_duration_secs {
            return fail(format!(
                "policy.default_duration_secs ({}) must be at most policy.max_duration_secs ({}), \
                 which must be more than 0",
                p.default_duration_secs, p.max_duration_secs
            ));
        }
        if p.max_total_secs.is_some_and(|t| t < p.max_duration_secs) {
            return fail(format!(
                "policy.max_total_secs ({}) must be at least policy.max_duration_secs ({}): \
                 it bounds a grant with its extensions",
                p.max_total_secs.unwrap_or_default(),
                p.max_duration_secs
            ));
        }
        if let Some(why) = p.steps_problem() {
            return fail(why);
        }
        let steps = p.approval_steps();
        if !(p.auto_approve || p.break_glass || steps.iter().all(|s| !s.approvers.is_empty())) {
            return fail(
                "nobody can approve it (set policy.approvers, or policy.auto_approve)".into(),
            );
        }
        if p.approvals_required < 1 {
            return fail("policy.approvals_required must be at least 1".into());
        }
        if p.manager_fallback.manager {
            return fail(
                "policy.manager_fallback decides when the manager cannot: it names groups and \
                 users, not the manager"
                    .into(),
            );
        }
        if !p.manager_fallback.is_empty() && !steps.iter().any(|s| s.approvers.manager) {
            return fail(
                "policy.manager_fallback is set but no approver rule names the manager: it \
                 would never apply"
                    .into(),
            );
        }
        if p.escalation.manager {
            return fail(
                "policy.escalation names groups and users who decide when the approvers have \
                 not: not the manager"
                    .into(),
            );
        }
        if let Some(why) = ticket_format_problem(p) {
            return fail(why);
        }
        Ok(())
    }
}

/// What is wrong with the policy's ticket format, if anything: a pattern needs an example
/// that it matches (the form shows it), and must compile within its limits.
fn ticket_format_problem(p: &super::Policy) -> Option<String> {
    match (&p.ticket_pattern, &p.ticket_example) {
        (None, _) => None,
        (Some(_), None) => Some(
            "policy.ticket_pattern needs policy.ticket_example, a ticket that matches it \
             (the form shows it)"
                .into(),
        ),
        #[cfg(feature = "ssr")]
        (Some(pattern), Some(example)) => match super::ticket::TicketFormat::compile(pattern) {
            Err(why) => Some(why),
            Ok(_) if super::TicketId::parse(example).is_err() => Some(format!(
                "policy.ticket_example {example:?} is not a ticket reference (letters, digits \
                 and - _ . : / #, at most 64)"
            )),
            Ok(f) if !f.matches(example) => Some(format!(
                "policy.ticket_example {example:?} does not match policy.ticket_pattern {:?}",
                f.pattern()
            )),
            Ok(_) => None,
        },
        #[cfg(not(feature = "ssr"))]
        (Some(_), Some(_)) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::policy::ApproverRule;

    fn entitlement() -> Entitlement {
        serde_json::from_value(serde_json::json!({
            "id": "prod-admin",
            "name": "Production administrator",
            "targets": [{"kind": "account", "account_id": "333333333333",
                "permission_set_arn": "arn:aws:sso:::permissionSet/ssoins-1234567890abcdef/ps-0123456789abcdef"}],
            "policy": {"eligible_groups": ["engineering"], "approvers": {"groups": ["cloud-approvers"]},
                "max_duration_secs": 7200, "default_duration_secs": 3600}
        }))
        .expect("a valid entitlement")
    }

    fn person(groups: &[&str]) -> Principal {
        Principal {
            user_id: "iss|alice".into(),
            email: "alice@example.com".into(),
            email_verified: true,
            display_name: "Alice".into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            manager: None,
            is_admin: false,
        }
    }

    #[test]
    fn a_usable_entitlement_passes() {
        assert_eq!(entitlement().check(), Ok(()));
    }

    #[test]
    fn each_unusable_entitlement_says_why() {
        type Spoil = fn(&mut Entitlement);
        let cases: Vec<(Spoil, &str)> = vec![
            (|e| e.id = "Bad Id".into(), "entitlement id"),
            (|e| e.name = " ".into(), "the name is empty"),
            (|e| e.targets.clear(), "no targets"),
            (|e| e.policy.eligible_groups.clear(), "nobody is eligible"),
            (
                |e| e.policy.default_duration_secs = 10_000,
                "must be at most",
            ),
            (
                |e| e.policy.approvers = ApproverRule::default(),
                "nobody can approve",
            ),
            (|e| e.policy.approvals_required = 0, "at least 1"),
            (
                |e| {
                    e.policy.steps = vec![crate::domain::ApprovalStep {
                        name: None,
                        approvers: ApproverRule {
                            manager: true,
                            ..Default::default()
                        },
                        count: 1,
                    }]
                },
                "not both",
            ),
            (
                |e| e.policy.ticket_pattern = Some(r"CHG-\d+".into()),
                "needs policy.ticket_example",
            ),
            (
                |e| e.policy.manager_fallback.groups = vec!["cloud-approvers".into()],
                "would never apply",
            ),
            (
                |e| {
                    e.policy.approvers.manager = true;
                    e.policy.manager_fallback.manager = true;
                },
                "not the manager",
            ),
        ];
        for (spoil, why) in cases {
            let mut e = entitlement();
            spoil(&mut e);
            let err = e.check().expect_err(why).to_string();
            assert!(err.contains(why), "{err} should say {why:?}");
        }
    }

    #[cfg(feature = "ssr")]
    #[test]
    fn a_ticket_format_needs_a_valid_pattern_and_an_example_it_matches() {
        let with = |pattern: &str, example: &str| {
            let mut e = entitlement();
            e.policy.ticket_pattern = Some(pattern.into());
            e.policy.ticket_example = Some(example.into());
            e.check().map_err(|e| e.to_string())
        };
        assert_eq!(with(r"CHG-\d{4}", "CHG-1234"), Ok(()));
        let err = with(r"CHG-\d{4}", "CHG-12").unwrap_err();
        assert!(err.contains("does not match"), "{err}");
        let err = with("CHG-(", "CHG-1").unwrap_err();
        assert!(err.contains("not a valid regular expression"), "{err}");
        let err = with(r"(a)\1", "aa").unwrap_err();
        assert!(err.contains("not a valid regular expression"), "{err}");
        let err = with(".*", "<script>").unwrap_err();
        assert!(err.contains("is not a ticket reference"), "{err}");
    }

    #[test]
    fn eligibility_is_checked_against_the_latest_groups() {
        let e = entitlement();
        assert_eq!(e.no_longer_eligible(&person(&["engineering"])), None);
        let why = e.no_longer_eligible(&person(&["sales"])).expect("refused");
        assert!(why.contains("Alice is no longer eligible for Production administrator"));
    }
}
