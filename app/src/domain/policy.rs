//! Who may request what, who may decide, and whether a request is well-formed.
//! Pure functions over the caller's latest claims: the server calls them at request
//! time, at decision time and again before a grant is provisioned.

use super::approvers::ApprovalStep;
pub use super::approvers::{ApproverRule, Principal};
use super::types::{AccessDuration, FieldError, Justification, TicketId};
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default)]
    pub eligible_groups: Vec<String>,
    #[serde(default)]
    pub eligible_users: Vec<String>,
    #[serde(default)]
    pub approvers: ApproverRule,
    /// Who decides instead of the manager when `approvers.manager` is set but the
    /// requester has no manager claim, or it names nobody the portal knows (groups and
    /// users only). Empty: such requests wait for the other approvers, or time out.
    #[serde(default, skip_serializing_if = "ApproverRule::is_empty")]
    pub manager_fallback: ApproverRule,
    /// Distinct approvals needed before access is granted (with `approvers`, the one
    /// step of a policy without `steps`).
    #[serde(default = "one")]
    pub approvals_required: u32,
    /// Approval in steps, each with its approvers and a count (see `domain::steps`).
    /// Empty: one step, `approvers` with `approvals_required`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<ApprovalStep>,
    pub max_duration_secs: u64,
    pub default_duration_secs: u64,
    #[serde(default)]
    pub require_ticket: bool,
    /// The format a ticket must have: a regular expression the whole reference must match
    /// (see `domain::ticket`). `None`: any well-formed reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_pattern: Option<String>,
    /// A ticket reference that has the format, shown on the form (required with a pattern).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_example: Option<String>,
    #[serde(default)]
    pub auto_approve: bool,
    /// Emergency access: granted at once, and every use alerts the admins.
    #[serde(default)]
    pub break_glass: bool,
    /// Pending requests time out after this long without a decision.
    #[serde(default = "default_decision_timeout")]
    pub decision_timeout_secs: u64,
    /// The longest one grant may last, its extensions included. `None`: twice
    /// `max_duration_secs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_total_secs: Option<u64>,
    /// Extensions of at most this long need no approver (0: every extension follows the
    /// approvers, unless the entitlement is approved automatically anyway).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub extension_auto_approve_secs: u64,
    /// Who may also decide a request nobody decided in `escalate_after_secs` (groups and
    /// users). Empty: the portal-wide `mail.fallback_approver_group`, if set.
    #[serde(default, skip_serializing_if = "ApproverRule::is_empty")]
    pub escalation: ApproverRule,
    /// How long a request waits before it is escalated (0: the portal-wide
    /// `mail.escalate_after_secs`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub escalate_after_secs: u64,
    /// Break-glass: a use not reviewed by an admin within this long is escalated to every
    /// admin (default a day).
    #[serde(
        default = "default_review_within",
        skip_serializing_if = "is_default_review_within"
    )]
    pub review_within_secs: u64,
    /// Chat webhooks (names from `[chat.webhooks]`) that hear of this entitlement's
    /// requests, decisions, grants and break-glass uses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chat: Vec<String>,
}

fn default_review_within() -> u64 {
    24 * 3600
}

fn is_default_review_within(n: &u64) -> bool {
    *n == default_review_within()
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn one() -> u32 {
    1
}

fn default_decision_timeout() -> u64 {
    24 * 3600
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum Denied {
    #[error("you cannot decide your own request")]
    OwnRequest,
    #[error("you are not an approver for this entitlement")]
    NotAnApprover,
    #[error("you are not eligible for this entitlement")]
    NotEligible,
}

/// What a requester typed, before parsing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestDraft {
    pub justification: String,
    pub duration: String,
    pub ticket: String,
    /// When access should start: blank for as soon as it is approved, a delay (`2h`,
    /// `1d`) or a UTC time (`2026-12-03 09:00`). See [`super::time::parse_start`].
    #[serde(default)]
    pub starts: String,
}

/// A request that passed every check against its entitlement's policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidRequest {
    pub justification: Justification,
    pub duration: AccessDuration,
    pub ticket: Option<TicketId>,
}

impl Policy {
    pub fn is_eligible(&self, p: &Principal) -> bool {
        p.in_any_group(&self.eligible_groups) || p.is_named_in(&self.eligible_users)
    }

    pub fn may_approve(&self, approver: &Principal, requester: &Principal) -> Result<(), Denied> {
        if approver.user_id == requester.user_id {
            return Err(Denied::OwnRequest);
        }
        // At some step (a policy at one step, [`Policy::at_step`], has only that one).
        let allowed = self.approval_steps().iter().any(|s| {
            let rule = &s.approvers;
            (rule.manager && approver.manages(requester))
                || approver.in_any_group(&rule.groups)
                || approver.is_named_in(&rule.users)
        });
        if allowed {
            Ok(())
        } else {
            Err(Denied::NotAnApprover)
        }
    }

    /// Whether who decides depends on the requester's manager being known: a rule (of
    /// some step) names the manager and there is a fallback for when it is not.
    pub fn has_manager_fallback(&self) -> bool {
        !self.manager_fallback.is_empty()
            && self.approval_steps().iter().any(|s| s.approvers.manager)
    }

    /// The policy as it applies to one requester: when the manager should decide but is
    /// not known (`manager_known` false: no manager claim, or one naming nobody the portal
    /// knows), the fallback's groups and users may decide too.
    pub fn for_requester(&self, manager_known: bool) -> Policy {
        let mut p = self.clone();
        if self.has_manager_fallback() && !manager_known {
            // Each rule that names the manager: the fallback stands in for them there.
            for rule in p.rules_mut().into_iter().filter(|r| r.manager) {
                rule.groups
                    .extend(self.manager_fallback.groups.iter().cloned());
                rule.users
                    .extend(self.manager_fallback.users.iter().cloned());
            }
        }
        p
    }

    /// The policy for a request that was escalated to `rule`: its groups and users may
    /// decide too (recorded on the request when it was escalated, so a later change of
    /// the configuration does not widen who may decide it).
    pub fn with_escalation(&self, rule: Option<&ApproverRule>) -> Policy {
        let mut p = self.clone();
        if let Some(rule) = rule {
            // At whichever step the request waits.
            for mine in p.rules_mut() {
                mine.groups.extend(rule.groups.iter().cloned());
                mine.users.extend(rule.users.iter().cloned());
            }
        }
        p
    }

    pub fn max_duration(&self) -> Duration {
        Duration::from_secs(self.max_duration_secs)
    }

    pub fn default_duration(&self) -> Duration {
        Duration::from_secs(self.default_duration_secs)
    }

    /// The longest one grant may last, extensions included.
    pub fn max_total(&self) -> Duration {
        Duration::from_secs(
            self.max_total_secs
                .unwrap_or(self.max_duration_secs.saturating_mul(2)),
        )
    }

    /// Whether an extension by `more` is approved without asking anyone.
    pub fn extension_approves_itself(&self, more: Duration) -> bool {
        self.auto_approve
            || self.break_glass
            || (self.extension_auto_approve_secs > 0
                && more.as_secs() <= self.extension_auto_approve_secs)
    }

    /// How much longer a grant that lasts `so_far` (start to current end) may be
    /// extended: none once it reaches [`Policy::max_total`].
    pub fn extension_room(&self, so_far: Duration) -> Duration {
        self.max_total()
            .saturating_sub(so_far)
            .min(self.max_duration())
    }

    /// Parses and checks a request for more time on a grant that lasts `so_far`: a
    /// request like any other (justification, ticket, at most `max_duration` more) whose
    /// duration also keeps the grant within [`Policy::max_total`].
    pub fn validate_extension(
        &self,
        draft: &RequestDraft,
        min: Duration,
        so_far: Duration,
    ) -> Result<ValidRequest, Vec<FieldError>> {
        let valid = self.validate(draft, min)?;
        let room = self.extension_room(so_far);
        if valid.duration.as_duration() > room {
            let total = super::time::format_duration(self.max_total());
            let message = if room < min {
                format!("this access cannot be extended: it may last {total} in all")
            } else {
                format!(
                    "at most {} more: this access may last {total} in all",
                    super::time::format_duration(room)
                )
            };
            return Err(vec![FieldError::new("duration", message)]);
        }
        Ok(valid)
    }

    /// Whether a request is approved with nobody's approval (automatic or break-glass).
    /// Approvals by people are counted step by step: [`Policy::progress`].
    pub fn approves_itself(&self) -> bool {
        self.auto_approve || self.break_glass
    }

    /// Parses and checks a draft. `min` is the portal-wide shortest duration.
    pub fn validate(
        &self,
        draft: &RequestDraft,
        min: Duration,
    ) -> Result<ValidRequest, Vec<FieldError>> {
        let mut errors = Vec::new();
        let justification = Justification::parse(&draft.justification)
            .map_err(|m| errors.push(FieldError::new("justification", m)))
            .ok();
        let duration = match AccessDuration::parse(&draft.duration) {
            Ok(d) if d.as_duration() > self.max_duration() => {
                errors.push(FieldError::new(
                    "duration",
                    format!(
                        "the maximum for this entitlement is {}",
                        super::time::format_duration(self.max_duration())
                    ),
                ));
                None
            }
            Ok(d) if d.as_duration() < min => {
                errors.push(FieldError::new(
                    "duration",
                    format!(
                        "the minimum duration is {}",
                        super::time::format_duration(min)
                    ),
                ));
                None
            }
            Ok(d) => Some(d),
            Err(m) => {
                errors.push(FieldError::new("duration", m));
                None
            }
        };
        let ticket = if self.require_ticket {
            TicketId::parse(&draft.ticket)
                .map_err(|m| errors.push(FieldError::new("ticket", m)))
                .ok()
        } else if draft.ticket.trim().is_empty() {
            None
        } else {
            // Optional, but if given it must still be well-formed.
            TicketId::parse(&draft.ticket)
                .map_err(|m| errors.push(FieldError::new("ticket", m)))
                .ok()
        };
        #[cfg(feature = "ssr")]
        if let (Some(t), Some(pattern)) = (&ticket, &self.ticket_pattern) {
            // The pattern was checked when the entitlement was configured; one that no
            // longer compiles admits nothing.
            let fits = super::ticket::TicketFormat::compile(pattern)
                .map(|f| f.matches(t.as_str()))
                .unwrap_or(false);
            if !fits {
                errors.push(FieldError::new(
                    "ticket",
                    super::ticket::mismatch_message(self.ticket_example.as_deref()),
                ));
            }
        }
        match (justification, duration) {
            (Some(justification), Some(duration)) if errors.is_empty() => Ok(ValidRequest {
                justification,
                duration,
                ticket,
            }),
            _ => Err(errors),
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A verified person for the domain's tests (`demo|name`, `name@example.com`).
    pub(in crate::domain) fn person(
        name: &str,
        groups: &[&str],
        manager: Option<&str>,
    ) -> Principal {
        Principal {
            user_id: format!("demo|{name}"),
            email: format!("{name}@example.com"),
            email_verified: true,
            display_name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            manager: manager.map(|m| format!("{m}@example.com")),
            is_admin: false,
        }
    }

    fn policy() -> Policy {
        Policy {
            eligible_groups: vec!["engineering".into()],
            eligible_users: vec!["contractor@example.com".into()],
            approvers: ApproverRule {
                manager: true,
                groups: vec!["cloud-approvers".into()],
                users: vec![],
            },
            manager_fallback: ApproverRule::default(),
            approvals_required: 1,
            steps: Vec::new(),
            max_duration_secs: 4 * 3600,
            default_duration_secs: 3600,
            require_ticket: false,
            ticket_pattern: None,
            ticket_example: None,
            auto_approve: false,
            break_glass: false,
            decision_timeout_secs: 3600,
            max_total_secs: None,
            extension_auto_approve_secs: 0,
            escalation: ApproverRule::default(),
            escalate_after_secs: 0,
            review_within_secs: 24 * 3600,
            chat: Vec::new(),
        }
    }

    #[test]
    fn eligibility_by_group_or_name() {
        let p = policy();
        assert!(p.is_eligible(&person("alice", &["engineering"], None)));
        assert!(p.is_eligible(&person("contractor", &[], None)));
        assert!(!p.is_eligible(&person("eve", &["sales"], None)));
    }

    #[test]
    fn approvers() {
        let p = policy();
        let alice = person("alice", &["engineering"], Some("bob"));
        let bob = person("bob", &["engineering-leads"], None);
        let carol = person("carol", &["cloud-approvers"], None);
        let eve = person("eve", &["engineering"], None);
        assert_eq!(p.may_approve(&bob, &alice), Ok(()));
        assert_eq!(p.may_approve(&carol, &alice), Ok(()));
        assert_eq!(p.may_approve(&eve, &alice), Err(Denied::NotAnApprover));
        // Nobody decides their own request, even a member of the approver group.
        let approver_alice = person("alice", &["cloud-approvers"], Some("bob"));
        assert_eq!(
            p.may_approve(&approver_alice, &approver_alice),
            Err(Denied::OwnRequest)
        );
        // The manager rule only counts when the policy asks for it.
        let mut no_manager = policy();
        no_manager.approvers.manager = false;
        assert_eq!(
            no_manager.may_approve(&bob, &alice),
            Err(Denied::NotAnApprover)
        );
    }

    #[test]
    fn names_match_the_user_id_or_a_verified_email_only() {
        let p = policy();
        let alice = person("alice", &["engineering"], Some("bob"));
        let mut bob = person("bob", &["engineering-leads"], None);
        assert!(bob.is_known_as("demo|bob"));
        assert!(bob.is_known_as("Bob@Example.com"));
        assert!(!bob.is_known_as("DEMO|BOB"), "user ids are exact");
        // Someone whose email the provider did not verify is not named by that email:
        // not as a manager, not in a list of approvers, not in a list of eligible users.
        bob.email_verified = false;
        assert!(!bob.is_known_as("bob@example.com"));
        assert!(bob.is_known_as("demo|bob"));
        assert_eq!(p.may_approve(&bob, &alice), Err(Denied::NotAnApprover));
        let mut by_name = policy();
        by_name.approvers.manager = false;
        by_name.approvers.users = vec!["bob@example.com".into()];
        assert_eq!(
            by_name.may_approve(&bob, &alice),
            Err(Denied::NotAnApprover)
        );
        by_name.approvers.users = vec!["demo|bob".into()];
        assert_eq!(by_name.may_approve(&bob, &alice), Ok(()));
        // A manager named by user id needs no email at all.
        let managed_by_id = Principal {
            manager: Some("demo|bob".into()),
            ..alice.clone()
        };
        assert_eq!(p.may_approve(&bob, &managed_by_id), Ok(()));
        let mut contractor = person("contractor", &[], None);
        contractor.email_verified = false;
        assert!(!p.is_eligible(&contractor));
    }

    #[test]
    fn approvals_needed() {
        let mut p = policy();
        p.approvals_required = 2;
        assert!(!p.progress(&[1]).complete());
        assert!(p.progress(&[2]).complete());
        assert!(!p.approves_itself());
        p.auto_approve = true;
        assert!(p.approves_itself());
    }

    fn draft(j: &str, d: &str, t: &str) -> RequestDraft {
        RequestDraft {
            justification: j.into(),
            duration: d.into(),
            ticket: t.into(),
            ..Default::default()
        }
    }

    fn fields(r: Result<ValidRequest, Vec<FieldError>>) -> Vec<String> {
        r.err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn validates_drafts() {
        let p = policy();
        let min = Duration::from_secs(15 * 60);
        let ok = p.validate(&draft("deploy fix", "1h", ""), min).unwrap();
        assert_eq!(ok.duration.as_secs(), 3600);
        assert_eq!(ok.ticket, None);
        assert_eq!(
            fields(p.validate(&draft("", "1h", ""), min)),
            ["justification"]
        );
        assert_eq!(fields(p.validate(&draft("x", "5h", ""), min)), ["duration"]);
        assert_eq!(fields(p.validate(&draft("x", "5m", ""), min)), ["duration"]);
        assert_eq!(
            fields(p.validate(&draft("", "nonsense", "<bad>"), min)),
            ["justification", "duration", "ticket"]
        );
        let err = p.validate(&draft("x", "5h", ""), min).unwrap_err();
        assert!(err[0].message.contains("maximum"), "{err:?}");
        let err = p.validate(&draft("x", "1m", ""), min).unwrap_err();
        assert!(err[0].message.contains("minimum"), "{err:?}");
    }

    #[test]
    fn extensions_stay_within_the_total_and_approve_themselves_up_to_the_limit() {
        let mut p = policy(); // 4h a request, so 8h in all by default
        let min = Duration::from_secs(15 * 60);
        let h = |n: u64| Duration::from_secs(n * 3600);
        assert_eq!(p.max_total(), h(8));
        // A grant of 3h may gain up to 4h (one request's most), one of 6h only 2h more.
        assert_eq!(p.extension_room(h(3)), h(4));
        assert_eq!(p.extension_room(h(6)), h(2));
        assert_eq!(p.extension_room(h(8)), Duration::ZERO);
        let ok = p
            .validate_extension(&draft("still fixing", "2h", ""), min, h(6))
            .unwrap();
        assert_eq!(ok.duration.as_secs(), 7200);
        let err = p
            .validate_extension(&draft("still fixing", "3h", ""), min, h(6))
            .unwrap_err();
        assert_eq!(err[0].field, "duration");
        assert_eq!(
            err[0].message,
            "at most 2h more: this access may last 8h in all"
        );
        let err = p
            .validate_extension(&draft("still fixing", "1h", ""), min, h(8) - min / 2)
            .unwrap_err();
        assert_eq!(
            err[0].message,
            "this access cannot be extended: it may last 8h in all"
        );
        // The draft's own checks come first.
        assert_eq!(
            fields(p.validate_extension(&draft("", "5h", ""), min, h(1))),
            ["justification", "duration"]
        );
        p.max_total_secs = Some(5 * 3600);
        assert_eq!(p.extension_room(h(3)), h(2));

        // Approvers decide extensions unless the policy says otherwise.
        assert!(!p.extension_approves_itself(Duration::from_secs(60)));
        p.extension_auto_approve_secs = 3600;
        assert!(p.extension_approves_itself(h(1)));
        assert!(!p.extension_approves_itself(h(1) + Duration::from_secs(1)));
        p.extension_auto_approve_secs = 0;
        p.auto_approve = true;
        assert!(p.extension_approves_itself(h(4)));
    }

    #[test]
    fn ticket_required_when_policy_says() {
        let mut p = policy();
        p.require_ticket = true;
        let min = Duration::from_secs(60);
        assert_eq!(fields(p.validate(&draft("x", "1h", " "), min)), ["ticket"]);
        let ok = p.validate(&draft("x", "1h", "CHG-1"), min).unwrap();
        assert_eq!(ok.ticket.unwrap().as_str(), "CHG-1");
    }

    #[cfg(feature = "ssr")]
    #[test]
    fn a_ticket_must_have_the_entitlements_format() {
        let mut p = policy();
        p.require_ticket = true;
        p.ticket_pattern = Some(r"(CHG|INC)-\d{4,6}".into());
        p.ticket_example = Some("CHG-10234".into());
        let min = Duration::from_secs(60);
        let ok = p.validate(&draft("x", "1h", "INC-0042"), min).unwrap();
        assert_eq!(ok.ticket.unwrap().as_str(), "INC-0042");
        let err = p.validate(&draft("x", "1h", "JIRA-42"), min).unwrap_err();
        assert_eq!(err.len(), 1);
        assert_eq!(err[0].field, "ticket");
        assert_eq!(
            err[0].message,
            "this entitlement needs a ticket like CHG-10234"
        );
        // Optional but given: the format still applies; left out: fine.
        p.require_ticket = false;
        assert_eq!(
            fields(p.validate(&draft("x", "1h", "CHG-1"), min)),
            ["ticket"]
        );
        assert_eq!(p.validate(&draft("x", "1h", ""), min).unwrap().ticket, None);
        // A pattern that no longer compiles admits nothing.
        p.ticket_pattern = Some("(".into());
        assert_eq!(
            fields(p.validate(&draft("x", "1h", "CHG-1234"), min)),
            ["ticket"]
        );
    }

    #[test]
    fn the_fallback_decides_only_when_the_manager_is_not_known() {
        let mut p = policy();
        p.approvers = ApproverRule {
            manager: true,
            ..Default::default()
        };
        p.manager_fallback = ApproverRule {
            groups: vec!["cloud-approvers".into()],
            users: vec!["dana@example.com".into()],
            ..Default::default()
        };
        assert!(p.has_manager_fallback());
        let alice = person("alice", &["engineering"], Some("bob"));
        let carol = person("carol", &["cloud-approvers"], None);
        let dana = person("dana", &[], None);
        let bob = person("bob", &["engineering"], None);
        // The manager is known: only the manager decides.
        let known = p.for_requester(true);
        assert_eq!(known.may_approve(&bob, &alice), Ok(()));
        assert_eq!(
            known.may_approve(&carol, &alice),
            Err(Denied::NotAnApprover)
        );
        // Not known: the fallback decides too (and the manager claim still counts).
        let unknown = p.for_requester(false);
        assert_eq!(unknown.may_approve(&carol, &alice), Ok(()));
        assert_eq!(unknown.may_approve(&dana, &alice), Ok(()));
        assert_eq!(unknown.may_approve(&bob, &alice), Ok(()));
        // Never for one's own request.
        assert_eq!(unknown.may_approve(&carol, &carol), Err(Denied::OwnRequest));
        // No manager in the rule, or no fallback: the policy is as it was.
        let mut groups_only = p.clone();
        groups_only.approvers.manager = false;
        assert!(!groups_only.has_manager_fallback());
        assert_eq!(groups_only.for_requester(false), groups_only);
        let mut no_fallback = p.clone();
        no_fallback.manager_fallback = ApproverRule::default();
        assert_eq!(no_fallback.for_requester(false), no_fallback);
    }

    #[test]
    fn policy_json_defaults() {
        let p: Policy =
            serde_json::from_str(r#"{"max_duration_secs":3600,"default_duration_secs":600}"#)
                .unwrap();
        assert_eq!(p.approvals_required, 1);
        assert!(!p.auto_approve);
        assert_eq!(p.decision_timeout_secs, 86_400);
    }
}
