//! Reading the catalog: the organization (roots, OUs breadth first, accounts) from AWS
//! Organizations and the permission sets from SSO Admin, paginated and paced.

use super::*;

impl SsoAdminProvisioner {
    /// The root, then every OU below it breadth first, with the accounts in each.
    pub(super) async fn read_organization(
        &self,
        catalog: &mut Catalog,
        progress: &Progress,
    ) -> Result<(), ProvisionError> {
        set_phase(progress, "reading the organization");
        let roots = all_pages(&self.orgs_budget, |next| async move {
            let out = self
                .orgs
                .list_roots()
                .set_next_token(next)
                .send()
                .await
                .map_err(|e| self.classify_on("ListRoots", e))
                .inspect(|_| self.answered("ListRoots"))?;
            let roots = out
                .roots()
                .iter()
                .filter_map(|r| Some((r.id()?.to_owned(), r.name().unwrap_or("Root").to_owned())));
            Ok((roots.collect(), out.next_token))
        })
        .await?;
        let mut queue = std::collections::VecDeque::new();
        for (id, name) in roots {
            let path = format!("/{id}/");
            catalog.org_units.push(OrgUnit {
                ou_id: id.clone(),
                name,
                parent_id: None,
                path: path.clone(),
            });
            queue.push_back((id, path));
        }
        while let Some((parent, path)) = queue.pop_front() {
            let (parent, path) = (parent.as_str(), path.as_str());
            let accounts = all_pages(&self.orgs_budget, |next| async move {
                let out = self
                    .orgs
                    .list_accounts_for_parent()
                    .parent_id(parent)
                    .set_next_token(next)
                    .send()
                    .await
                    .map_err(|e| self.classify_on("ListAccountsForParent", e))
                    .inspect(|_| self.answered("ListAccountsForParent"))?;
                let accounts = out
                    .accounts()
                    .iter()
                    .filter(|a| {
                        a.status() != Some(&aws_sdk_organizations::types::AccountStatus::Suspended)
                    })
                    .filter_map(|a| {
                        Some(CatalogAccount {
                            account_id: a.id()?.to_owned(),
                            name: a.name().unwrap_or_default().to_owned(),
                            ou_id: parent.to_owned(),
                            ou_path: path.to_owned(),
                        })
                    });
                Ok((accounts.collect(), out.next_token))
            })
            .await?;
            catalog.accounts.extend(accounts);
            let children = all_pages(&self.orgs_budget, |next| async move {
                let out = self
                    .orgs
                    .list_organizational_units_for_parent()
                    .parent_id(parent)
                    .set_next_token(next)
                    .send()
                    .await
                    .map_err(|e| self.classify_on("ListOrganizationalUnitsForParent", e))
                    .inspect(|_| self.answered("ListOrganizationalUnitsForParent"))?;
                let children = out.organizational_units().iter().filter_map(|ou| {
                    let id = ou.id()?;
                    Some(OrgUnit {
                        ou_id: id.to_owned(),
                        name: ou.name().unwrap_or(id).to_owned(),
                        parent_id: Some(parent.to_owned()),
                        path: format!("{path}{id}/"),
                    })
                });
                Ok((children.collect(), out.next_token))
            })
            .await?;
            for child in children {
                queue.push_back((child.ou_id.clone(), child.path.clone()));
                catalog.org_units.push(child);
            }
            let mut p = progress.lock().expect("progress lock");
            p.org_units = catalog.org_units.len();
            p.accounts = catalog.accounts.len();
        }
        Ok(())
    }

    pub(super) async fn read_permission_sets(
        &self,
        catalog: &mut Catalog,
        progress: &Progress,
    ) -> Result<(), ProvisionError> {
        set_phase(progress, "reading permission sets");
        let arns = all_pages(&self.budget, |next| async move {
            let out = self
                .sso
                .list_permission_sets()
                .instance_arn(&self.instance_arn)
                .set_next_token(next)
                .send()
                .await
                .map_err(|e| self.classify_on("ListPermissionSets", e))
                .inspect(|_| self.answered("ListPermissionSets"))?;
            Ok((out.permission_sets.unwrap_or_default(), out.next_token))
        })
        .await?;
        for arn in arns {
            self.budget.take().await;
            let out = self
                .sso
                .describe_permission_set()
                .instance_arn(&self.instance_arn)
                .permission_set_arn(&arn)
                .send()
                .await
                .map_err(|e| self.classify_on("DescribePermissionSet", e))
                .inspect(|_| self.answered("DescribePermissionSet"))?;
            let Some(ps) = out.permission_set() else {
                continue;
            };
            catalog.permission_sets.push(CatalogPermissionSet {
                name: ps.name().unwrap_or(&arn).to_owned(),
                description: ps.description().unwrap_or_default().to_owned(),
                // AWS's default when a permission set names none: one hour.
                session_duration_secs: ps.session_duration().and_then(iso8601_secs).unwrap_or(3600),
                arn,
            });
            progress.lock().expect("progress lock").permission_sets = catalog.permission_sets.len();
        }
        Ok(())
    }
}

/// Every page of a paginated AWS list, each call within `budget`: `page` is called with
/// the previous page's token (none at first) and returns its items and the next token.
pub(super) async fn all_pages<T, F, Fut>(
    budget: &Budget,
    mut page: F,
) -> Result<Vec<T>, ProvisionError>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<T>, Option<String>), ProvisionError>>,
{
    let mut all = Vec::new();
    let mut next = None;
    loop {
        budget.take().await;
        let (items, token) = page(next.take()).await?;
        all.extend(items);
        match token {
            Some(t) if !t.is_empty() => next = Some(t),
            _ => return Ok(all),
        }
    }
}

pub(super) fn set_phase(progress: &Progress, phase: &str) {
    progress.lock().expect("progress lock").phase = phase.to_owned();
}

/// Seconds in an ISO 8601 duration of hours, minutes and seconds (`PT8H`, `PT1H30M`), the
/// form AWS gives session durations in.
pub fn iso8601_secs(s: &str) -> Option<i64> {
    let rest = s.strip_prefix("PT")?;
    let mut total = 0i64;
    let mut number = String::new();
    for c in rest.chars() {
        match c {
            '0'..='9' => number.push(c),
            'H' | 'M' | 'S' => {
                let n: i64 = number.parse().ok()?;
                number.clear();
                total += n * match c {
                    'H' => 3600,
                    'M' => 60,
                    _ => 1,
                };
            }
            _ => return None,
        }
    }
    (number.is_empty() && total > 0).then_some(total)
}
