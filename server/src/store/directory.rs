//! The directory's approver groups (`directory_member`), as the last catalog sync read
//! them: who to write to about a request, among people who never signed in.

use super::*;
use std::collections::BTreeMap;

/// A member of a group, as the directory knows them: enough to write to them. Never an
/// identity: someone found this way is matched by their verified sign-in when they come.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectoryPerson {
    pub email: String,
    pub display_name: String,
}

/// Replaces the directory with what was read: every group the policies name now (a group
/// no longer named is forgotten). Emails are kept as given, one per person per group.
pub async fn replace_directory(
    conn: &mut AnyConnection,
    groups: &BTreeMap<String, Vec<DirectoryPerson>>,
    now: Timestamp,
) -> Result<usize> {
    sqlx::query("DELETE FROM directory_member")
        .execute(&mut *conn)
        .await?;
    let mut rows = 0;
    for (group, people) in groups {
        let mut seen = std::collections::BTreeSet::new();
        for p in people {
            if !seen.insert(p.email.to_lowercase()) {
                continue;
            }
            sqlx::query(
                "INSERT INTO directory_member (group_name, email, display_name, refreshed_at)
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(group)
            .bind(&p.email)
            .bind(&p.display_name)
            .bind(now.millis())
            .execute(&mut *conn)
            .await?;
            rows += 1;
        }
    }
    Ok(rows)
}

/// The people the directory lists in any of these groups, each once (emails ignoring
/// case), by email.
pub async fn directory_members(
    conn: &mut AnyConnection,
    groups: &[String],
) -> Result<Vec<DirectoryPerson>> {
    if groups.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT email, display_name FROM directory_member WHERE group_name IN ({})
         ORDER BY email, group_name",
        placeholders(1, groups.len())
    );
    let mut q = sqlx::query_as::<_, (String, String)>(&sql);
    for g in groups {
        q = q.bind(g);
    }
    let mut people: Vec<DirectoryPerson> = q
        .fetch_all(conn)
        .await?
        .into_iter()
        .map(|(email, display_name)| DirectoryPerson {
            email,
            display_name,
        })
        .collect();
    people.sort_by_key(|p| p.email.to_lowercase());
    people.dedup_by(|a, b| a.email.eq_ignore_ascii_case(&b.email));
    Ok(people)
}
