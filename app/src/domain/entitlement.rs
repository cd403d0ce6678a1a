//! What can be requested: one or more targets (account or OU x permission set) and the
//! policy that says who may ask and who decides. Declared in the configuration file
//! (`[[entitlements]]`) and stored by the server.

use super::policy::Policy;
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
        let a = &p.approvers;
        if !(p.auto_approve
            || p.break_glass
            || a.manager
            || !a.groups.is_empty()
            || !a.users.is_empty())
        {
            return fail(
                "nobody can approve it (set policy.approvers, or policy.auto_approve)".into(),
            );
        }
        if p.approvals_required < 1 {
            return fail("policy.approvals_required must be at least 1".into());
        }
        Ok(())
    }
}
