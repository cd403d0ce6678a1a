//! Who is told what. Messages are composed here and queued in the outbox in the same
//! transaction as the change that caused them (invariant 7); the worker delivers them.

use crate::store::{self, RequestRow};
use anyhow::Result;
use app::domain::{Policy, Principal, Timestamp};
use sqlx::AnyConnection;

pub struct Mail {
    pub subject: String,
    pub text: String,
    pub html: String,
}

pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// A message with a heading, labelled facts and one link. Every value is escaped in HTML.
pub fn compose(subject: String, intro: &str, facts: &[(&str, &str)], link: (&str, &str)) -> Mail {
    let mut text = format!("{intro}\n\n");
    let mut html = format!(
        "<!doctype html><html><body style=\"font-family:sans-serif\"><p>{}</p><table>",
        escape_html(intro)
    );
    for (label, value) in facts {
        text.push_str(&format!("{label}: {value}\n"));
        html.push_str(&format!(
            "<tr><th align=\"left\">{}</th><td>{}</td></tr>",
            escape_html(label),
            escape_html(value).replace('\n', "<br>")
        ));
    }
    text.push_str(&format!("\n{}: {}\n", link.0, link.1));
    html.push_str(&format!(
        "</table><p><a href=\"{}\">{}</a></p></body></html>",
        escape_html(link.1),
        escape_html(link.0)
    ));
    Mail {
        subject,
        text,
        html,
    }
}

pub async fn queue(conn: &mut AnyConnection, to: &str, mail: &Mail, now: Timestamp) -> Result<()> {
    store::enqueue_mail(conn, to, &mail.subject, &mail.text, &mail.html, now).await?;
    Ok(())
}

/// Everyone who may decide this request under its policy, by the latest known claims.
pub async fn approvers_of(
    conn: &mut AnyConnection,
    policy: &Policy,
    requester: &Principal,
) -> Result<Vec<Principal>> {
    Ok(store::all_users(conn)
        .await?
        .into_iter()
        .filter(|u| policy.may_approve(u, requester).is_ok())
        .collect())
}

pub async fn admins(conn: &mut AnyConnection) -> Result<Vec<Principal>> {
    Ok(store::all_users(conn)
        .await?
        .into_iter()
        .filter(|u| u.is_admin)
        .collect())
}

pub fn request_facts<'a>(
    r: &'a RequestRow,
    requester: &'a Principal,
    entitlement_name: &'a str,
    duration: &'a str,
) -> Vec<(&'a str, &'a str)> {
    let mut facts = vec![
        ("Requester", requester.display_name.as_str()),
        ("Entitlement", entitlement_name),
        ("Duration", duration),
        ("Justification", r.justification.as_str()),
    ];
    if let Some(t) = &r.ticket {
        facts.push(("Ticket", t.as_str()));
    }
    facts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_text_is_escaped_in_html_only() {
        let m = compose(
            "s".into(),
            "intro",
            &[("Justification", "<script>alert('x')</script> & co")],
            ("Open", "https://portal.example.com/approvals"),
        );
        assert!(m.html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; co"));
        assert!(!m.html.contains("<script>"));
        assert!(m.text.contains("<script>alert('x')</script> & co"));
        assert!(m.text.contains("Open: https://portal.example.com/approvals"));
    }
}
