//! Approval in steps, each with a quorum (issue #12, item 1).
//!
//! A policy's approval is a list of steps. Each step names its approvers (an
//! [`ApproverRule`]) and how many distinct people of them must approve. A step starts
//! when the one before it is complete; a rejection at any step ends the request; one
//! person decides a request once, so counts once, whatever steps they could decide.
//! A policy without `steps` has one: `approvers` with `approvals_required`, so every
//! policy written before steps existed keeps its meaning.

use super::approvers::{ApprovalStep, ApproverRule, Principal};
use super::policy::Policy;

/// Where a request stands in its policy's steps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    /// The step waiting for approvals (0-based); `of` when every step is complete.
    pub step: usize,
    pub of: usize,
    /// Approvals counted at `step`, and how many it needs (both 0 when complete).
    pub approvals: u32,
    pub needed: u32,
}

impl Progress {
    pub fn complete(&self) -> bool {
        self.step >= self.of
    }
}

impl Policy {
    /// The approval steps, in order: `steps` when set, else the one step `approvers` and
    /// `approvals_required` make.
    pub fn approval_steps(&self) -> Vec<ApprovalStep> {
        if self.steps.is_empty() {
            vec![ApprovalStep {
                name: None,
                approvers: self.approvers.clone(),
                count: self.approvals_required.max(1),
            }]
        } else {
            self.steps.clone()
        }
    }

    /// Whether approval takes more than one step (the pages then say which step).
    pub fn is_stepped(&self) -> bool {
        self.steps.len() > 1
    }

    /// The policy as it applies to step `i` alone: its rule is `approvers`, its count
    /// `approvals_required`. Everything else (fallback, escalation, eligibility) is kept.
    /// A step past the last is the last.
    pub fn at_step(&self, i: usize) -> Policy {
        let steps = self.approval_steps();
        let step = &steps[i.min(steps.len() - 1)];
        let mut p = self.clone();
        p.approvers = step.approvers.clone();
        p.approvals_required = step.count.max(1);
        p.steps = Vec::new();
        p
    }

    /// "Step 2 of 3: Cloud approvers" for a stepped policy; `None` for one step.
    pub fn step_label(&self, i: usize) -> Option<String> {
        let steps = self.approval_steps();
        (steps.len() > 1).then(|| {
            let i = i.min(steps.len() - 1);
            format!("Step {} of {}: {}", i + 1, steps.len(), steps[i].label())
        })
    }

    /// Where a request stands, given the approvals that count at each step (`counted[i]`
    /// for step `i`; missing entries are 0). Approvals beyond a step's count do not carry
    /// over to the next step: each step's people approve for themselves.
    pub fn progress(&self, counted: &[u32]) -> Progress {
        let steps = self.approval_steps();
        for (i, s) in steps.iter().enumerate() {
            let have = counted.get(i).copied().unwrap_or(0);
            if have < s.count.max(1) {
                return Progress {
                    step: i,
                    of: steps.len(),
                    approvals: have,
                    needed: s.count.max(1),
                };
            }
        }
        Progress {
            step: steps.len(),
            of: steps.len(),
            approvals: 0,
            needed: 0,
        }
    }

    /// Every approver rule of the policy (each step's, or `approvers`), for changes that
    /// apply to all of them.
    pub(super) fn rules_mut(&mut self) -> Vec<&mut ApproverRule> {
        if self.steps.is_empty() {
            vec![&mut self.approvers]
        } else {
            self.steps.iter_mut().map(|s| &mut s.approvers).collect()
        }
    }

    /// Every rule the policy names people with: the steps' (or `approvers`), the manager
    /// fallback and the escalation rule.
    pub fn all_rules(&self) -> Vec<ApproverRule> {
        let mut rules: Vec<ApproverRule> = self
            .approval_steps()
            .into_iter()
            .map(|s| s.approvers)
            .collect();
        rules.push(self.manager_fallback.clone());
        rules.push(self.escalation.clone());
        rules
    }

    /// Whether the policy names `p` as someone who may decide its requests (by group or
    /// by name, at a step, as the manager fallback or after escalation). A requester's
    /// manager may decide too, but that depends on the requester: see
    /// [`Policy::asks_the_manager`].
    pub fn names_as_approver(&self, p: &Principal) -> bool {
        self.all_rules()
            .iter()
            .any(|r| p.in_any_group(&r.groups) || p.is_named_in(&r.users))
    }

    /// Whether some step asks the requester's manager.
    pub fn asks_the_manager(&self) -> bool {
        self.approval_steps().iter().any(|s| s.approvers.manager)
    }

    /// What is wrong with the steps, if anything (checked with the rest of the policy).
    pub fn steps_problem(&self) -> Option<String> {
        if self.steps.is_empty() {
            return None;
        }
        if !self.approvers.is_empty() || self.approvals_required != 1 {
            return Some(
                "set either policy.steps or policy.approvers and policy.approvals_required, \
                 not both (a policy without steps is the one step they make)"
                    .into(),
            );
        }
        if self.steps.len() > MAX_STEPS {
            return Some(format!("policy.steps has at most {MAX_STEPS} steps"));
        }
        for (i, s) in self.steps.iter().enumerate() {
            let n = i + 1;
            if s.approvers.is_empty() {
                return Some(format!("policy.steps[{n}] names no approvers"));
            }
            if s.count < 1 {
                return Some(format!("policy.steps[{n}].count must be at least 1"));
            }
            let only_manager = s.approvers.manager
                && s.approvers.groups.is_empty()
                && s.approvers.users.is_empty();
            if only_manager && s.count > 1 {
                return Some(format!(
                    "policy.steps[{n}] needs {} approvals but names only the manager, who is one person",
                    s.count
                ));
            }
            if s.count as usize > MAX_COUNT {
                return Some(format!("policy.steps[{n}].count is at most {MAX_COUNT}"));
            }
            if s.name.as_deref().is_some_and(|n| n.chars().count() > 60) {
                return Some(format!("policy.steps[{n}].name is at most 60 characters"));
            }
        }
        None
    }
}

/// Bounds that keep a policy readable and a request decidable.
pub const MAX_STEPS: usize = 5;
const MAX_COUNT: usize = 20;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::policy::tests::person;
    use crate::domain::policy::Denied;

    fn two_steps() -> Policy {
        let mut p: Policy =
            serde_json::from_str(r#"{"max_duration_secs":3600,"default_duration_secs":600}"#)
                .unwrap();
        p.steps = vec![
            ApprovalStep {
                name: Some("Manager".into()),
                approvers: ApproverRule {
                    manager: true,
                    ..Default::default()
                },
                count: 1,
            },
            ApprovalStep {
                name: None,
                approvers: ApproverRule {
                    groups: vec!["cloud-approvers".into()],
                    ..Default::default()
                },
                count: 2,
            },
        ];
        p
    }

    #[test]
    fn who_the_policy_names_as_approver() {
        let mut p = two_steps();
        let carol = person("carol", &["cloud-approvers"], None);
        let bob = person("bob", &["engineering"], None);
        let erin = person("erin", &["on-call"], None);
        assert!(p.names_as_approver(&carol));
        assert!(
            !p.names_as_approver(&bob),
            "a manager is named only through a requester"
        );
        assert!(p.asks_the_manager());
        assert!(!p.names_as_approver(&erin));
        p.escalation.users = vec!["erin@example.com".into()];
        assert!(p.names_as_approver(&erin), "escalation may decide");
        p.steps.remove(0);
        assert!(!p.asks_the_manager());
    }

    #[test]
    fn a_policy_without_steps_is_one_step() {
        let mut p: Policy =
            serde_json::from_str(r#"{"max_duration_secs":3600,"default_duration_secs":600,"approvers":{"groups":["ops"]},"approvals_required":2}"#)
                .unwrap();
        let steps = p.approval_steps();
        assert_eq!(steps.len(), 1);
        assert_eq!(steps[0].approvers.groups, ["ops"]);
        assert_eq!(steps[0].count, 2);
        assert!(!p.is_stepped());
        assert_eq!(p.step_label(0), None);
        assert_eq!(p.progress(&[1]).step, 0);
        assert!(p.progress(&[2]).complete());
        assert_eq!(p.at_step(0), {
            let mut same = p.clone();
            same.steps.clear();
            same
        });
        assert_eq!(p.steps_problem(), None);
        p.approvals_required = 0;
        assert_eq!(
            p.approval_steps()[0].count,
            1,
            "never fewer than one approval"
        );
    }

    #[test]
    fn steps_complete_in_order_and_counts_do_not_carry_over() {
        let p = two_steps();
        assert!(p.is_stepped());
        let at = p.progress(&[]);
        assert_eq!((at.step, at.of, at.approvals, at.needed), (0, 2, 0, 1));
        let at = p.progress(&[1]);
        assert_eq!((at.step, at.approvals, at.needed), (1, 0, 2));
        let at = p.progress(&[1, 1]);
        assert_eq!((at.step, at.approvals, at.needed), (1, 1, 2));
        assert!(p.progress(&[1, 2]).complete());
        // Two approvals at step 1 complete it, never step 2 as well.
        assert_eq!(p.progress(&[2, 0]).step, 1);
        // Approvals at step 2 do not complete the request while step 1 waits.
        assert_eq!(p.progress(&[0, 2]).step, 0);
        assert_eq!(
            p.step_label(1).as_deref(),
            Some("Step 2 of 2: cloud-approvers")
        );
        assert_eq!(p.step_label(0).as_deref(), Some("Step 1 of 2: Manager"));
    }

    #[test]
    fn each_step_has_its_own_approvers() {
        let p = two_steps();
        let alice = person("alice", &["engineering"], Some("bob"));
        let bob = person("bob", &[], None);
        let carol = person("carol", &["cloud-approvers"], None);
        assert_eq!(p.at_step(0).may_approve(&bob, &alice), Ok(()));
        assert_eq!(
            p.at_step(0).may_approve(&carol, &alice),
            Err(Denied::NotAnApprover)
        );
        assert_eq!(p.at_step(1).may_approve(&carol, &alice), Ok(()));
        assert_eq!(
            p.at_step(1).may_approve(&bob, &alice),
            Err(Denied::NotAnApprover)
        );
        assert_eq!(p.at_step(1).approvals_required, 2);
        // The whole policy: someone who may decide at some step.
        assert_eq!(p.may_approve(&bob, &alice), Ok(()));
        assert_eq!(p.may_approve(&carol, &alice), Ok(()));
        assert_eq!(
            p.may_approve(&person("eve", &[], None), &alice),
            Err(Denied::NotAnApprover)
        );
        // Escalation and the manager fallback reach every step they concern.
        let mut f = p.clone();
        f.manager_fallback.groups = vec!["leads".into()];
        assert!(f.has_manager_fallback());
        let unknown = f.for_requester(false);
        let lead = person("lee", &["leads"], None);
        assert_eq!(unknown.at_step(0).may_approve(&lead, &alice), Ok(()));
        assert_eq!(
            unknown.at_step(1).may_approve(&lead, &alice),
            Err(Denied::NotAnApprover),
            "the fallback stands in for the manager only"
        );
        let rule = ApproverRule {
            users: vec!["gina@example.com".into()],
            ..Default::default()
        };
        let escalated = p.with_escalation(Some(&rule));
        let gina = person("gina", &[], None);
        assert_eq!(escalated.at_step(0).may_approve(&gina, &alice), Ok(()));
        assert_eq!(escalated.at_step(1).may_approve(&gina, &alice), Ok(()));
    }

    #[test]
    fn steps_are_checked() {
        let mut p = two_steps();
        assert_eq!(p.steps_problem(), None);
        p.approvers.groups = vec!["ops".into()];
        assert!(p.steps_problem().unwrap().contains("not both"));
        p.approvers = ApproverRule::default();
        p.steps[0].count = 2;
        assert!(p.steps_problem().unwrap().contains("only the manager"));
        p.steps[0].count = 0;
        assert!(p.steps_problem().unwrap().contains("at least 1"));
        p.steps[0].count = 1;
        p.steps[1].approvers = ApproverRule::default();
        assert_eq!(
            p.steps_problem().as_deref(),
            Some("policy.steps[2] names no approvers")
        );
        let mut long = two_steps();
        long.steps = vec![long.steps[1].clone(); MAX_STEPS + 1];
        assert!(long.steps_problem().unwrap().contains("at most"));
    }

    #[test]
    fn steps_read_from_json() {
        let p: Policy = serde_json::from_str(
            r#"{"max_duration_secs":3600,"default_duration_secs":600,
                "steps":[{"name":"Manager","approvers":{"manager":true}},
                         {"approvers":{"groups":["cloud-approvers"]},"count":2}]}"#,
        )
        .unwrap();
        assert_eq!(p, two_steps());
        let bad = serde_json::from_str::<Policy>(
            r#"{"max_duration_secs":3600,"default_duration_secs":600,
                "steps":[{"approvers":{"manager":true},"quorum":2}]}"#,
        );
        assert!(bad.is_err(), "unknown fields are refused");
    }
}
