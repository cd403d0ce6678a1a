//! The access explorer (issue #14, item 6): who holds access to which account and
//! permission set right now (through which grant, until when), who could ask for it
//! (eligibility by policy, from the people the portal knows), narrowed by person,
//! account, OU and permission set; exported as CSV; and a what-if that shows whom a new
//! definition of an entitlement would let ask or decide, before it is applied.

use super::*;
use std::collections::{BTreeSet, HashMap};

/// Rows the page shows of each list; the export has them all.
pub const SHOWN: usize = 500;
/// The longest definition a what-if reads.
const MAX_DEFINITION: usize = 64 * 1024;

/// The catalog as the explorer names it: accounts (with the words of their OU path) and
/// permission sets.
struct Catalog {
    accounts: HashMap<String, store::AccountRow>,
    /// Account id -> its OU path with the OUs' names ("/r-demo/ou-1/ Root Workloads").
    ou_words: HashMap<String, String>,
    permission_sets: HashMap<String, String>,
}

impl Catalog {
    async fn read(conn: &mut AnyConnection) -> anyhow::Result<Self> {
        let units: HashMap<String, String> = store::all_org_units(conn)
            .await?
            .into_iter()
            .map(|u| (u.ou_id, u.name))
            .collect();
        let accounts: HashMap<String, store::AccountRow> = store::all_accounts(conn)
            .await?
            .into_iter()
            .map(|a| (a.account_id.clone(), a))
            .collect();
        let ou_words = accounts
            .values()
            .map(|a| {
                let names: Vec<&str> = a
                    .ou_path
                    .split('/')
                    .filter_map(|id| units.get(id).map(String::as_str))
                    .collect();
                (
                    a.account_id.clone(),
                    format!("{} {}", a.ou_path, names.join(" ")),
                )
            })
            .collect();
        let permission_sets = store::all_permission_sets(conn)
            .await?
            .into_iter()
            .map(|p| (p.permission_set_arn, p.name))
            .collect();
        Ok(Self {
            accounts,
            ou_words,
            permission_sets,
        })
    }

    fn account(&self, id: &str) -> (String, String) {
        match self.accounts.get(id) {
            Some(a) => (format!("{} ({id})", a.name), a.ou_path.clone()),
            None => (id.to_owned(), String::new()),
        }
    }

    fn permission_set(&self, arn: &str) -> String {
        self.permission_sets
            .get(arn)
            .cloned()
            .unwrap_or_else(|| arn.rsplit('/').next().unwrap_or(arn).to_owned())
    }

    /// The accounts a target covers today.
    fn accounts_of(&self, scope: &TargetScope) -> Vec<String> {
        let mut ids: Vec<String> = match scope {
            TargetScope::Account { account_id } => vec![account_id.as_str().to_owned()],
            TargetScope::Ou { ou_id } => self
                .accounts
                .values()
                .filter(|a| a.ou_path.contains(&format!("/{}/", ou_id.as_str())))
                .map(|a| a.account_id.clone())
                .collect(),
        };
        ids.sort();
        ids
    }
}

/// The filter's words, trimmed and lowered once; an empty or missing word matches
/// anything.
struct Words([Option<String>; 4]);

impl Words {
    fn new(f: &AccessFilter) -> Self {
        let word = |w: &Option<String>| {
            w.as_deref()
                .map(str::trim)
                .filter(|w| !w.is_empty())
                .map(str::to_lowercase)
        };
        Self([
            word(&f.person),
            word(&f.account),
            word(&f.ou),
            word(&f.permission_set),
        ])
    }

    /// Whether each text contains its word (any case): person, account, OU, permission set.
    fn match_all(&self, texts: [&str; 4]) -> bool {
        self.0.iter().zip(texts).all(|(word, text)| {
            word.as_ref()
                .is_none_or(|w| text.to_lowercase().contains(w.as_str()))
        })
    }
}

/// Each word at most 200 characters.
fn check_filter(f: &AccessFilter) -> Result<(), AppError> {
    for (field, value) in [
        ("person", &f.person),
        ("account", &f.account),
        ("ou", &f.ou),
        ("permission_set", &f.permission_set),
    ] {
        if value.as_deref().is_some_and(|v| v.chars().count() > 200) {
            return Err(AppError::invalid(field, "at most 200 characters"));
        }
    }
    Ok(())
}

/// A live entitlement as "could ask" reads it: who decides, and each account it covers
/// today with a permission set.
type Open<'a> = (&'a Entitlement, String, Vec<(String, &'a str)>);

/// A list cut at a limit: the rows kept and how many more matched (a row past the limit
/// is counted, never built, so a company's whole "could ask" list costs no memory).
struct Cut {
    rows: Vec<AccessRowView>,
    more: usize,
    limit: usize,
}

impl Cut {
    fn new(limit: usize) -> Self {
        Self {
            rows: Vec::new(),
            more: 0,
            limit,
        }
    }

    fn full(&self) -> bool {
        self.rows.len() >= self.limit
    }

    fn push(&mut self, row: impl FnOnce() -> AccessRowView) {
        if self.full() {
            self.more += 1;
        } else {
            self.rows.push(row());
        }
    }
}

impl PortalService {
    /// The explorer's two lists for `filter`, each cut at `limit` rows (the page shows
    /// [`SHOWN`]; the export has them all).
    pub async fn access_rows(
        &self,
        who: &Principal,
        filter: AccessFilter,
        limit: usize,
    ) -> Result<AccessExplorer, AppError> {
        let Admin(_) = self.admin(who, "access_explorer").await?;
        check_filter(&filter)?;
        let mut conn = self.store.conn().await.or_internal()?;
        let catalog = Catalog::read(&mut conn).await.or_internal()?;
        let words = Words::new(&filter);
        let matches = |person: &Principal, account_id: &str, arn: &str| {
            words.match_all([
                &format!("{} {}", person.display_name, person.email),
                &catalog.account(account_id).0,
                catalog.ou_words.get(account_id).map_or("", String::as_str),
                &catalog.permission_set(arn),
            ])
        };
        let entitlements = self.entitlements_by_id(&mut conn).await.or_internal()?;

        // Held now: grants being set up, active, or being taken down.
        let grants: Vec<GrantRow> = store::live_grants(&mut conn, None)
            .await
            .or_internal()?
            .into_iter()
            .filter(|g| g.status != GrantStatus::Scheduled)
            .collect();
        let people = self
            .users_by_id(&mut conn, grants.iter().map(|g| g.principal_id.as_str()))
            .await
            .or_internal()?;
        let requests = store::requests_by_ids(
            &mut conn,
            grants.iter().map(|g| g.access_request_id.as_str()),
        )
        .await
        .or_internal()?;
        let mut holding = Cut::new(limit);
        for g in &grants {
            let Some(person) = people.get(&g.principal_id) else {
                continue;
            };
            if !matches(person, &g.account_id, &g.permission_set_arn) {
                continue;
            }
            holding.push(|| {
                let entitlement = requests
                    .get(&g.access_request_id)
                    .and_then(|r| entitlements.get(&r.entitlement_id))
                    .map_or_else(String::new, |e| e.name.clone());
                let (account, ou_path) = catalog.account(&g.account_id);
                AccessRowView {
                    person: person.display_name.clone(),
                    email: person.email.clone(),
                    account,
                    ou_path,
                    permission_set: catalog.permission_set(&g.permission_set_arn),
                    entitlement,
                    status: g.status.to_string(),
                    detail: g.ends_at.format_utc(),
                    request_id: Some(g.access_request_id.clone()),
                }
            });
        }

        // Could ask: every live entitlement, for each person it is open to, at each
        // account its targets cover today.
        let retired = store::retired_entitlements(&mut conn).await.or_internal()?;
        let everyone = store::all_users(&mut conn).await.or_internal()?;
        let mut live: Vec<&Entitlement> = entitlements
            .values()
            .filter(|e| !retired.contains_key(&e.id))
            .collect();
        live.sort_by(|a, b| a.name.cmp(&b.name));
        let definitions = live
            .iter()
            .map(|e| {
                Ok(DefinitionView {
                    id: e.id.clone(),
                    name: e.name.clone(),
                    toml: crate::config::entitlement_toml(e)?,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()
            .or_internal()?;
        // Each entitlement's words and (account, permission set) pairs, worked out once.
        let open: Vec<Open> = live
            .into_iter()
            .map(|e| {
                let pairs = e
                    .targets
                    .iter()
                    .flat_map(|t| {
                        let arn = t.permission_set_arn.as_str();
                        catalog
                            .accounts_of(&t.scope)
                            .into_iter()
                            .map(move |a| (a, arn))
                    })
                    .collect();
                (e, Self::describe_policy(e), pairs)
            })
            .collect();
        let mut eligible = Cut::new(limit);
        for person in &everyone {
            for (e, decided_by, pairs) in &open {
                if !e.policy.is_eligible(person) {
                    continue;
                }
                for (account_id, arn) in pairs {
                    if !matches(person, account_id, arn) {
                        continue;
                    }
                    eligible.push(|| {
                        let (account, ou_path) = catalog.account(account_id);
                        AccessRowView {
                            person: person.display_name.clone(),
                            email: person.email.clone(),
                            account,
                            ou_path,
                            permission_set: catalog.permission_set(arn),
                            entitlement: e.name.clone(),
                            status: String::new(),
                            detail: decided_by.clone(),
                            request_id: None,
                        }
                    });
                }
            }
        }
        Ok(AccessExplorer {
            holding: holding.rows,
            holding_more: holding.more,
            eligible: eligible.rows,
            eligible_more: eligible.more,
            definitions,
        })
    }

    /// Every row of the explorer for `filter`, as CSV (the export route).
    pub async fn access_export(
        &self,
        who: &Principal,
        filter: AccessFilter,
    ) -> Result<String, AppError> {
        let all = self.access_rows(who, filter, usize::MAX).await?;
        let mut csv = String::from(
            "kind,person,email,account,ou_path,permission_set,entitlement,status,ends_or_decided_by,request_id\n",
        );
        for (kind, rows) in [("holds", &all.holding), ("could_ask", &all.eligible)] {
            for r in rows {
                let cells = [
                    kind,
                    &r.person,
                    &r.email,
                    &r.account,
                    &r.ou_path,
                    &r.permission_set,
                    &r.entitlement,
                    &r.status,
                    &r.detail,
                    r.request_id.as_deref().unwrap_or(""),
                ];
                let line: Vec<String> = cells.iter().map(|c| crate::export::csv_cell(c)).collect();
                csv.push_str(&line.join(","));
                csv.push('\n');
            }
        }
        Ok(csv)
    }

    pub(super) async fn what_if(
        &self,
        who: &Principal,
        definition: &str,
    ) -> Result<WhatIfView, AppError> {
        let Admin(_) = self.admin(who, "what_if").await?;
        if definition.len() > MAX_DEFINITION {
            return Err(AppError::invalid("definition", "at most 64 KiB"));
        }
        let proposed =
            parse_definition(definition).map_err(|m| AppError::invalid("definition", m))?;
        let mut conn = self.store.conn().await.or_internal()?;
        let current = store::get_entitlement(&mut conn, &proposed.id)
            .await
            .or_internal()?;
        let everyone = store::all_users(&mut conn).await.or_internal()?;
        let names = |f: &dyn Fn(&Principal) -> bool| -> BTreeSet<String> {
            everyone
                .iter()
                .filter(|p| f(p))
                .map(|p| format!("{} <{}>", p.display_name, p.email))
                .collect()
        };
        let before_eligible = names(&|p| current.as_ref().is_some_and(|e| e.policy.is_eligible(p)));
        let after_eligible = names(&|p| proposed.policy.is_eligible(p));
        let before_approvers = names(&|p| {
            current
                .as_ref()
                .is_some_and(|e| e.policy.names_as_approver(p))
        });
        let after_approvers = names(&|p| proposed.policy.names_as_approver(p));
        let diff = |a: &BTreeSet<String>, b: &BTreeSet<String>| -> Vec<String> {
            b.difference(a).cloned().collect()
        };
        let mut notes = Vec::new();
        let was_manager = current
            .as_ref()
            .is_some_and(|e| e.policy.asks_the_manager());
        match (was_manager, proposed.policy.asks_the_manager()) {
            (false, true) => notes.push("Each requester's manager would decide too.".into()),
            (true, false) => notes.push("Requesters' managers would no longer decide.".into()),
            _ => {}
        }
        if let Some(c) = &current {
            let (before, after) = (Self::describe_policy(c), Self::describe_policy(&proposed));
            if before != after {
                notes.push(format!("Approval: {before} → {after}."));
            }
            if c.policy.max_duration_secs != proposed.policy.max_duration_secs {
                notes.push(format!(
                    "Longest grant: {} → {}.",
                    format_duration(c.policy.max_duration()),
                    format_duration(proposed.policy.max_duration())
                ));
            }
            if c.targets != proposed.targets {
                notes.push("It would grant other accounts or permission sets.".into());
            }
        }
        Ok(WhatIfView {
            entitlement: format!("{} ({})", proposed.name, proposed.id),
            new: current.is_none(),
            eligible_gain: diff(&before_eligible, &after_eligible),
            eligible_lose: diff(&after_eligible, &before_eligible),
            approvers_gain: diff(&before_approvers, &after_approvers),
            approvers_lose: diff(&after_approvers, &before_approvers),
            notes,
        })
    }
}

/// One entitlement from `[[entitlements]]` TOML (as `entitlements export` writes it), or
/// from a bare table of its fields; checked as the configuration would check it.
fn parse_definition(text: &str) -> Result<Entitlement, String> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        entitlements: Vec<Entitlement>,
    }
    let e = match toml::from_str::<File>(text) {
        Ok(f) => match <[Entitlement; 1]>::try_from(f.entitlements) {
            Ok([e]) => e,
            Err(v) => return Err(format!("give one entitlement, not {}", v.len())),
        },
        Err(first) => toml::from_str::<Entitlement>(text)
            .map_err(|_| format!("not an entitlement's TOML: {}", first.message()))?,
    };
    e.check().map_err(|e| e.to_string())?;
    Ok(e)
}
