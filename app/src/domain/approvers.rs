//! Who people are and who approves: a signed-in [`Principal`] and the identity rule that
//! matches names to them, an [`ApproverRule`], and an [`ApprovalStep`] (a rule and how
//! many of its people must approve).

use serde::{Deserialize, Serialize};

/// A signed-in person, as their identity provider described them at their last sign-in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// Stable id: issuer and subject, never the email alone.
    pub user_id: String,
    pub email: String,
    /// Whether the identity provider vouched for `email` (`email_verified`) at the last
    /// sign-in. An unverified email never names anyone: see [`Principal::is_known_as`].
    #[serde(default)]
    pub email_verified: bool,
    pub display_name: String,
    pub groups: Vec<String>,
    /// The manager's email (or subject), from the identity provider.
    pub manager: Option<String>,
    pub is_admin: bool,
}

impl Principal {
    pub fn in_any_group(&self, groups: &[String]) -> bool {
        groups
            .iter()
            .any(|g| self.groups.iter().any(|mine| mine == g))
    }

    /// The identity rule, the one place a name in a policy (`eligible_users`,
    /// `approvers.users`) or in someone's `manager` claim is matched to a person: the
    /// user id (`iss|sub`) exactly, or the email (ignoring ASCII case) only when the
    /// identity provider verified it. Emails are unique among users (the
    /// `app_user_email_unique` index; a second account claiming one is refused at
    /// sign-in), so a verified email names at most one person.
    pub fn is_known_as(&self, name: &str) -> bool {
        let name = name.trim();
        name == self.user_id
            || (self.email_verified
                && !self.email.is_empty()
                && name.eq_ignore_ascii_case(&self.email))
    }

    pub(super) fn is_named_in(&self, users: &[String]) -> bool {
        users.iter().any(|u| self.is_known_as(u))
    }

    /// Whether `self` is `other`'s manager according to `other`'s claims.
    pub fn manages(&self, other: &Principal) -> bool {
        other
            .manager
            .as_deref()
            .is_some_and(|m| self.is_known_as(m))
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApproverRule {
    /// The requester's manager may approve.
    #[serde(default)]
    pub manager: bool,
    /// Members of these IdP groups may approve.
    #[serde(default)]
    pub groups: Vec<String>,
    /// These people (email or user id) may approve.
    #[serde(default)]
    pub users: Vec<String>,
}

impl ApproverRule {
    /// Names nobody.
    pub fn is_empty(&self) -> bool {
        !self.manager && self.groups.is_empty() && self.users.is_empty()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalStep {
    /// What the pages and mail call the step ("Manager", "Cloud approvers").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Who may approve at this step.
    pub approvers: ApproverRule,
    /// Distinct approvals of the people `approvers` names that complete the step.
    #[serde(default = "one")]
    pub count: u32,
}

fn one() -> u32 {
    1
}

impl ApprovalStep {
    /// The step's name for people: its own, or one made from its rule.
    pub fn label(&self) -> String {
        if let Some(name) = self.name.as_deref().filter(|n| !n.trim().is_empty()) {
            return name.trim().to_owned();
        }
        let r = &self.approvers;
        let mut who: Vec<String> = Vec::new();
        if r.manager {
            who.push("manager".into());
        }
        who.extend(r.groups.iter().cloned());
        who.extend(r.users.iter().cloned());
        if who.is_empty() {
            "approvers".into()
        } else {
            who.join(" or ")
        }
    }
}
