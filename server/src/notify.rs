//! Who is told what. Messages are composed here and queued in the outbox in the same
//! transaction as the change that caused them (invariant 7); the worker delivers them.

use crate::store::{self, JobKind, RequestRow};
use anyhow::Result;
use app::domain::time::format_duration;
use app::domain::{Policy, Principal, Timestamp};
use serde::Deserialize;
use sqlx::AnyConnection;
use std::time::Duration;

/// Who hears about what, and when: the `[mail]` configuration section.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MailSettings {
    /// Starts every subject, in brackets: `[Portcullis] Access granted: ...`.
    pub portal_name: String,
    /// How long before a grant ends its holder is warned; 0 sends no warning.
    pub ending_soon_lead_secs: u64,
    /// Approvers are reminded of a request still pending this long after it was made; 0 never.
    pub reminder_after_secs: u64,
    /// A request still pending this long is escalated to `fallback_approver_group`; 0 never.
    pub escalate_after_secs: u64,
    /// IdP group whose members (as known to the portal) hear about escalated requests.
    pub fallback_approver_group: Option<String>,
    /// Extra addresses told about every new request (and reminded), e.g. a team list.
    pub approver_addresses: Vec<String>,
}

impl Default for MailSettings {
    fn default() -> Self {
        Self {
            portal_name: "Portcullis".into(),
            ending_soon_lead_secs: 15 * 60,
            reminder_after_secs: 4 * 3600,
            escalate_after_secs: 12 * 3600,
            fallback_approver_group: None,
            approver_addresses: Vec::new(),
        }
    }
}

fn enabled(secs: u64) -> Option<Duration> {
    (secs > 0).then(|| Duration::from_secs(secs))
}

impl MailSettings {
    pub fn ending_soon_lead(&self) -> Option<Duration> {
        enabled(self.ending_soon_lead_secs)
    }

    pub fn reminder_after(&self) -> Option<Duration> {
        enabled(self.reminder_after_secs)
    }

    pub fn escalate_after(&self) -> Option<Duration> {
        enabled(self.escalate_after_secs).filter(|_| self.fallback_approver_group.is_some())
    }

    /// The subject as sent: `[portal name] subject`.
    pub fn subject(&self, subject: &str) -> String {
        match self.portal_name.trim() {
            "" => subject.to_owned(),
            name => format!("[{name}] {subject}"),
        }
    }
}

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

/// Members of an IdP group, by the groups of their latest sign-in.
pub async fn members_of(conn: &mut AnyConnection, group: &str) -> Result<Vec<Principal>> {
    Ok(store::all_users(conn)
        .await?
        .into_iter()
        .filter(|u| u.groups.iter().any(|g| g == group))
        .collect())
}

/// Drops a request's pending announcement, reminder and escalation: it was decided,
/// cancelled or timed out.
pub async fn forget_approval_nudges(conn: &mut AnyConnection, request_id: &str) -> Result<()> {
    for kind in [
        JobKind::AnnounceRequest,
        JobKind::ApprovalReminder,
        JobKind::ApprovalEscalation,
    ] {
        store::delete_jobs_for(conn, request_id, kind).await?;
    }
    Ok(())
}

/// Why an approver is asked to look at a request.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Nudge<'a> {
    New,
    Reminder,
    /// Escalated to the members of this group.
    Escalation(&'a str),
}

/// "Approval needed" and its reminder and escalation: who, what, why, how long, and a
/// link to the decision page (which needs the approver's sign-in; the link decides nothing).
pub fn approval_mail(
    nudge: Nudge<'_>,
    r: &RequestRow,
    requester: &Principal,
    entitlement_name: &str,
    public_url: &str,
    now: Timestamp,
) -> Mail {
    let who = requester.display_name.as_str();
    let duration = format_duration(Duration::from_secs(r.duration_secs.max(0) as u64));
    let waiting = format_duration(Timestamp(r.created_at).until(now));
    let (subject, intro) = match nudge {
        Nudge::New => (
            format!("Approval needed: {entitlement_name} for {who}"),
            format!("{who} asks for {entitlement_name}. You can approve or reject it in Portcullis."),
        ),
        Nudge::Reminder => (
            format!("Reminder: approval needed: {entitlement_name} for {who}"),
            format!("{who}'s request for {entitlement_name} has waited {waiting} for a decision. You can approve or reject it in Portcullis."),
        ),
        Nudge::Escalation(group) => (
            format!("Escalated: {entitlement_name} for {who} still awaits a decision"),
            format!("{who}'s request for {entitlement_name} has waited {waiting} and its approvers have not decided. It is escalated to you as a member of {group}."),
        ),
    };
    let facts = request_facts(r, requester, entitlement_name, &duration);
    compose(
        subject,
        &intro,
        &facts,
        ("Decide in Portcullis", &format!("{public_url}/approvals")),
    )
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
        assert!(m
            .html
            .contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; co"));
        assert!(!m.html.contains("<script>"));
        assert!(m.text.contains("<script>alert('x')</script> & co"));
        assert!(m
            .text
            .contains("Open: https://portal.example.com/approvals"));
    }

    #[test]
    fn subjects_carry_the_portal_name() {
        let mut s = MailSettings::default();
        assert_eq!(
            s.subject("Access granted: x"),
            "[Portcullis] Access granted: x"
        );
        s.portal_name = "  ".into();
        assert_eq!(s.subject("Access granted: x"), "Access granted: x");
    }

    #[test]
    fn zero_turns_a_nudge_off_and_escalation_needs_a_group() {
        let mut s = MailSettings::default();
        assert_eq!(s.ending_soon_lead(), Some(Duration::from_secs(900)));
        assert_eq!(s.escalate_after(), None, "no fallback group configured");
        s.fallback_approver_group = Some("cloud-approvers".into());
        assert_eq!(s.escalate_after(), Some(Duration::from_secs(12 * 3600)));
        s.reminder_after_secs = 0;
        assert_eq!(s.reminder_after(), None);
    }
}
