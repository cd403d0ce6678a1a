//! Reading approver groups from IAM Identity Center's Identity Store, which the identity
//! provider keeps in step (SCIM) with the same groups: so that approvers who never signed
//! in to the portal are told too (issue #12, item 0). Paced by the catalog's budget: this
//! runs with the catalog sync, never on a request's path.

use super::*;
use crate::provisioner::DirectoryPerson;
use aws_sdk_identitystore::types::{AlternateIdentifier, MemberId, UniqueAttribute};
use std::collections::BTreeMap;

impl SsoAdminProvisioner {
    /// The members of each group, by display name (`GetGroupId`, `ListGroupMemberships`,
    /// `DescribeUser` once per person). A group Identity Store does not have is empty; a
    /// member without an email is left out (nobody to write to).
    pub(super) async fn directory_groups(
        &self,
        groups: &[String],
    ) -> Result<BTreeMap<String, Vec<DirectoryPerson>>, ProvisionError> {
        let mut people: HashMap<String, Option<DirectoryPerson>> = HashMap::new();
        let mut found = BTreeMap::new();
        for group in groups {
            let Some(group_id) = self.group_id(group).await? else {
                tracing::info!(%group, "approver group not found in Identity Store");
                found.insert(group.clone(), Vec::new());
                continue;
            };
            let group_id = group_id.as_str();
            let members = all_pages(&self.orgs_budget, |next| async move {
                let out = self
                    .identity
                    .list_group_memberships()
                    .identity_store_id(&self.identity_store_id)
                    .group_id(group_id)
                    .set_next_token(next)
                    .send()
                    .await
                    .map_err(|e| self.classify_on("ListGroupMemberships", e))
                    .inspect(|_| self.answered("ListGroupMemberships"))?;
                let ids = out
                    .group_memberships()
                    .iter()
                    .filter_map(|m| match m.member_id() {
                        Some(MemberId::UserId(id)) => Some(id.clone()),
                        _ => None,
                    });
                Ok((ids.collect::<Vec<_>>(), out.next_token))
            })
            .await?;
            let mut list = Vec::new();
            for user_id in members {
                if !people.contains_key(&user_id) {
                    let person = self.describe_person(&user_id).await?;
                    people.insert(user_id.clone(), person);
                }
                if let Some(Some(p)) = people.get(&user_id) {
                    list.push(p.clone());
                }
            }
            list.sort_by_key(|p: &DirectoryPerson| p.email.to_lowercase());
            list.dedup_by(|a, b| a.email.eq_ignore_ascii_case(&b.email));
            found.insert(group.clone(), list);
        }
        Ok(found)
    }

    /// The group's id by its display name; `None` when Identity Store has no such group.
    async fn group_id(&self, display_name: &str) -> Result<Option<String>, ProvisionError> {
        self.orgs_budget.take().await;
        let attribute = UniqueAttribute::builder()
            .attribute_path("displayName")
            .attribute_value(aws_smithy_types::Document::String(display_name.to_owned()))
            .build()
            .map_err(|e| ProvisionError::Permanent(e.to_string()))?;
        match self
            .identity
            .get_group_id()
            .identity_store_id(&self.identity_store_id)
            .alternate_identifier(AlternateIdentifier::UniqueAttribute(attribute))
            .send()
            .await
        {
            Ok(out) => {
                self.answered("GetGroupId");
                Ok(Some(out.group_id().to_owned()))
            }
            Err(e) if e.code() == Some("ResourceNotFoundException") => {
                self.metrics.aws_call("GetGroupId", "error");
                Ok(None)
            }
            Err(e) => Err(self.classify_on("GetGroupId", e)),
        }
    }

    /// A member's email (the primary one, else the first) and name; `None` without an
    /// email, or when the user was deleted between the listing and this call.
    async fn describe_person(
        &self,
        user_id: &str,
    ) -> Result<Option<DirectoryPerson>, ProvisionError> {
        self.orgs_budget.take().await;
        let out = match self
            .identity
            .describe_user()
            .identity_store_id(&self.identity_store_id)
            .user_id(user_id)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if e.code() == Some("ResourceNotFoundException") => {
                self.metrics.aws_call("DescribeUser", "error");
                return Ok(None);
            }
            Err(e) => return Err(self.classify_on("DescribeUser", e)),
        };
        self.answered("DescribeUser");
        let emails = out.emails();
        let email = emails
            .iter()
            .find(|e| e.primary())
            .or_else(|| emails.first())
            .and_then(|e| e.value())
            .map(str::trim)
            .filter(|e| e.contains('@'));
        Ok(email.map(|email| DirectoryPerson {
            email: email.to_owned(),
            display_name: out
                .display_name()
                .filter(|n| !n.trim().is_empty())
                .or(out.user_name())
                .unwrap_or(email)
                .to_owned(),
        }))
    }
}
