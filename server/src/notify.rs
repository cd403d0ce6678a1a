//! Who is told what. Messages are composed here and queued in the outbox in the same
//! transaction as the change that caused them (invariant 7); the worker delivers them.

use crate::chat::escape;
use crate::store::{self, JobKind, RequestRow};
use anyhow::Result;
use app::domain::time::format_duration;
use app::domain::{ApproverRule, GrantStatus, Policy, Principal, RequestStatus, Timestamp};
use sqlx::AnyConnection;
use std::time::Duration;

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

/// Someone to tell about a request they may decide.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recipient {
    pub email: String,
    /// The portal's user id of someone who signed in; `None` for someone it has not seen
    /// yet (found in the directory, or named by email). Telling is all that is ever done
    /// with those: whoever later decides signs in and is checked by their own claims.
    pub user_id: Option<String>,
}

/// Everyone to tell about a request waiting at approval step `step` of its policy (see
/// [`told_for_rule`]): the people of that step only.
pub async fn approvers_of(
    conn: &mut AnyConnection,
    policy: &Policy,
    requester: &Principal,
    step: usize,
) -> Result<Vec<Recipient>> {
    let policy = &policy_for(conn, policy, requester).await?.at_step(step);
    told_for_rule(conn, &policy.approvers, policy, requester).await
}

/// The people `rule` names, to tell about a request `policy` governs (issue #12, item 0):
///
/// - people the portal knows (group members and named people by their latest sign-in,
///   the manager by the requester's claim) whom `policy` lets decide: it has the last word
///   on each of them;
/// - people it has not seen yet, by email: members of the rule's groups in the approver
///   directory (Identity Store, read with the catalog sync), the rule's users named by
///   email, and the manager claim when it is an email. An address that belongs to someone
///   who signed in with it verified is theirs, judged above and never mailed as a stranger;
///   the requester's own address never is.
///
/// Each address once, ignoring case. Reading who may *decide* never goes through here.
pub async fn told_for_rule(
    conn: &mut AnyConnection,
    rule: &ApproverRule,
    policy: &Policy,
    requester: &Principal,
) -> Result<Vec<Recipient>> {
    // The candidates by index (group members, the people the rule or the manager claim
    // names), never everyone; the policy has the last word on each.
    let mut names: Vec<String> = rule.users.iter().map(|n| n.trim().to_owned()).collect();
    if rule.manager {
        names.extend(requester.manager.as_deref().map(|m| m.trim().to_owned()));
    }
    // Addresses the portal may not know anyone by: the directory's members of the rule's
    // groups, and the names that are emails.
    let mut unseen: Vec<String> = store::directory_members(conn, &rule.groups)
        .await?
        .into_iter()
        .map(|p| p.email)
        .collect();
    unseen.extend(names.iter().filter(|n| looks_like_email(n)).cloned());
    // One lookup for the people named and the owners of those addresses: an owner the
    // policy does not accept is simply not told below.
    let named = store::users_named(conn, &[names, unseen.clone()].concat()).await?;
    let owned = |email: &str| {
        named
            .iter()
            .any(|u| u.email_verified && u.email.eq_ignore_ascii_case(email))
    };
    unseen.retain(|email| !email.eq_ignore_ascii_case(&requester.email) && !owned(email));
    let mut known = store::members_of_groups(conn, &rule.groups).await?;
    known.extend(named);
    known.sort_by(|a, b| a.email.cmp(&b.email).then(a.user_id.cmp(&b.user_id)));
    known.dedup_by(|a, b| a.user_id == b.user_id);
    let mut told: Vec<Recipient> = known
        .into_iter()
        .filter(|u| policy.may_approve(u, requester).is_ok())
        .map(|u| Recipient {
            email: u.email,
            user_id: Some(u.user_id),
        })
        .collect();
    for email in unseen {
        if !told.iter().any(|r| r.email.eq_ignore_ascii_case(&email)) {
            told.push(Recipient {
                email,
                user_id: None,
            });
        }
    }
    Ok(told)
}

/// An address to write to: one `@` with something either side, no spaces.
fn looks_like_email(s: &str) -> bool {
    matches!(s.split_once('@'), Some((user, domain)) if !user.is_empty() && domain.contains('.') && !domain.contains('@'))
        && !s.contains(char::is_whitespace)
}

/// Whether the requester's manager claim names someone the portal knows (and who is
/// their manager by the identity rule): when not, `policy.manager_fallback` decides.
pub async fn manager_known(conn: &mut AnyConnection, requester: &Principal) -> Result<bool> {
    let Some(manager) = requester.manager.clone() else {
        return Ok(false);
    };
    Ok(store::users_named(conn, &[manager])
        .await?
        .iter()
        .any(|m| m.manages(requester)))
}

/// The policy as it applies to this requester ([`Policy::for_requester`]): one lookup,
/// only when the policy has a manager fallback.
pub async fn policy_for(
    conn: &mut AnyConnection,
    policy: &Policy,
    requester: &Principal,
) -> Result<Policy> {
    if !policy.has_manager_fallback() {
        return Ok(policy.clone());
    }
    Ok(policy.for_requester(manager_known(conn, requester).await?))
}

pub async fn admins(conn: &mut AnyConnection) -> Result<Vec<Principal>> {
    store::admins(conn).await
}

/// Members of an IdP group, by the groups of their latest sign-in.
pub async fn members_of(conn: &mut AnyConnection, group: &str) -> Result<Vec<Principal>> {
    store::members_of_groups(conn, &[group.to_owned()]).await
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
    /// Escalated to these people (`members of cloud-fallback`), who may now decide.
    Escalation(&'a str),
    /// The earlier approval steps are complete: this one (`Step 2 of 2: Security`) waits.
    Step(&'a str),
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
    let waiting = format_duration(r.created_at.until(now));
    // An extension asks for more time on access the requester holds now.
    let entitlement_name = &if r.extends_request_id.is_some() {
        format!("more time on {entitlement_name}")
    } else {
        entitlement_name.to_owned()
    };
    let (subject, intro) = match nudge {
        Nudge::New => (
            format!("Approval needed: {entitlement_name} for {who}"),
            format!("{who} asks for {entitlement_name}. You can approve or reject it in Portcullis."),
        ),
        Nudge::Reminder => (
            format!("Reminder: approval needed: {entitlement_name} for {who}"),
            format!("{who}'s request for {entitlement_name} has waited {waiting} for a decision. You can approve or reject it in Portcullis."),
        ),
        Nudge::Step(step) => (
            format!("Approval needed ({step}): {entitlement_name} for {who}"),
            format!("{who}'s request for {entitlement_name} was approved at the earlier step and now waits at {step}. You can approve or reject it in Portcullis."),
        ),
        Nudge::Escalation(group) => (
            format!("Escalated: {entitlement_name} for {who} still awaits a decision"),
            format!("{who}'s request for {entitlement_name} has waited {waiting} and its approvers have not decided. It is escalated to {group}: you may decide it now."),
        ),
    };
    let facts = request_facts(r, requester, entitlement_name, &duration);
    compose(
        subject,
        &intro,
        &facts,
        (
            "Open the request to decide",
            &request_link(public_url, &r.access_request_id),
        ),
    )
}

/// A request's own page, where every mail about it leads: the link only opens it, and
/// deciding there needs a signed-in approver (with a recent sign-in).
pub fn request_link(url: &str, request_id: &str) -> String {
    format!("{url}/requests/{request_id}")
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

// ------------------------------------------------------------------ the messages
//
// Every message Portcullis sends is worded here, one builder each, so that wording is
// reviewed (and tested) in one place. `url` is the portal's public URL.

/// The requester: approved, and access is being set up.
pub fn request_approved(
    url: &str,
    request_id: &str,
    entitlement: &str,
    by: &str,
    accounts: usize,
    justification: &str,
) -> Mail {
    compose(
        format!("Request approved: {entitlement}"),
        &format!("Your request for {entitlement} was approved by {by}. Access is being set up on {accounts} account(s)."),
        &[("Justification", justification)],
        ("Open the request", &request_link(url, request_id)),
    )
}

/// The requester: an extension was approved; their access now ends at `ends` (`None`:
/// it had ended meanwhile, nothing was extended).
pub fn extension_approved(
    url: &str,
    request_id: &str,
    entitlement: &str,
    by: &str,
    ends: Option<Timestamp>,
    justification: &str,
) -> Mail {
    let intro = match ends {
        Some(at) => format!(
            "Your request for more time on {entitlement} was approved by {by}. Your access now ends at {}, with no interruption.",
            at.format_utc()
        ),
        None => format!(
            "Your request for more time on {entitlement} was approved by {by}, but the access had already ended: nothing was extended. You can ask for access again."
        ),
    };
    compose(
        format!("Extension approved: {entitlement}"),
        &intro,
        &[("Justification", justification)],
        ("Open the request", &request_link(url, request_id)),
    )
}

/// The requester: rejected (by an approver, or closed because they are no longer eligible).
pub fn request_rejected(
    url: &str,
    request_id: &str,
    entitlement: &str,
    by: &str,
    why: &str,
    justification: &str,
) -> Mail {
    compose(
        format!("Request rejected: {entitlement}"),
        &format!("Your request for {entitlement} was rejected by {by}."),
        &[("Comment", why), ("Justification", justification)],
        ("Open the request", &request_link(url, request_id)),
    )
}

/// The requester: nobody decided in time.
pub fn request_timed_out(url: &str, entitlement: &str, justification: &str) -> Mail {
    compose(
        format!("Request timed out: {entitlement}"),
        &format!("Nobody decided your request for {entitlement} in time. You can ask again."),
        &[("Justification", justification)],
        ("Request access", &format!("{url}/")),
    )
}

/// The other approvers: someone decided, nothing is needed from them.
pub fn already_decided(
    url: &str,
    request_id: &str,
    entitlement: &str,
    requester: &str,
    decider: &str,
    outcome: RequestStatus,
    justification: &str,
) -> Mail {
    compose(
        format!("Already decided: {entitlement} for {requester}"),
        &format!("{decider} {outcome} this request; nothing is needed from you."),
        &[("Justification", justification)],
        ("Open the request", &request_link(url, request_id)),
    )
}

/// The admins: a break-glass entitlement was used (`message` says who, what and why).
pub fn break_glass_used(
    url: &str,
    entitlement: &str,
    requester: &str,
    message: &str,
    request_id: &str,
) -> Mail {
    compose(
        format!("Break-glass used: {entitlement} by {requester}"),
        message,
        &[("Request", request_id)],
        ("Open the request", &request_link(url, request_id)),
    )
}

/// The admins: a break-glass use still waits for its review.
pub fn break_glass_unreviewed(
    url: &str,
    entitlement: &str,
    requester: &str,
    waited: &str,
    r: &RequestRow,
) -> Mail {
    compose(
        format!("Break-glass use not reviewed: {entitlement} by {requester}"),
        &format!("{requester} used the break-glass entitlement {entitlement} {waited} ago and no admin has reviewed it yet. Review it on the admin page: say what you checked."),
        &[("Justification", r.justification.as_str()), ("Request", r.access_request_id.as_str())],
        ("Review it", &format!("{url}/admin#break-glass")),
    )
}

/// What a grant mail names: the target as people read it, and when access ends.
pub struct GrantFacts<'a> {
    /// `AdministratorAccess on production (333333333333)`.
    pub target: &'a str,
    pub entitlement: &'a str,
    pub ends: Timestamp,
    /// How long sessions opened before the end stay valid after it.
    pub session_tail: &'a str,
}

/// The holder: the grant became active, ended, or could not be granted. `None` for a
/// status nobody is told about.
pub fn grant_changed(
    url: &str,
    g: &GrantFacts<'_>,
    status: GrantStatus,
    why: &str,
) -> Option<Mail> {
    let GrantFacts {
        target,
        entitlement,
        session_tail,
        ..
    } = g;
    let (subject, intro) = match status {
        GrantStatus::Active => (
            format!("Access granted: {target}"),
            format!("Your access to {target} ({entitlement}) is active until {}. Sessions you open stay valid for up to {session_tail} after that: AWS does not end open sessions when an assignment is deleted.", g.ends.format_utc()),
        ),
        GrantStatus::Revoked => (
            format!("Access ended: {target}"),
            format!("Your access to {target} ({entitlement}) has ended ({why})."),
        ),
        GrantStatus::Failed => (
            format!("Access could not be granted: {target}"),
            format!("Your access to {target} ({entitlement}) could not be granted. {why}"),
        ),
        _ => return None,
    };
    let ends = g.ends.format_utc();
    Some(compose(
        subject,
        &intro,
        &[("Account", target), ("Ends", &ends)],
        ("Open My access", &format!("{url}/requests")),
    ))
}

/// The admins: granting failed for good.
pub fn provisioning_failed(
    url: &str,
    target: &str,
    holder: &str,
    why: &str,
    grant_id: &str,
) -> Mail {
    compose(
        format!("Provisioning failed: {target} for {holder}"),
        &format!("Granting {target} to {holder} failed. {why}"),
        &[("Grant", grant_id)],
        ("Open the admin dashboard", &format!("{url}/admin")),
    )
}

/// The holder: access ends soon, with a way to ask for more time.
/// The link opens My access with this grant's "Extend" form open.
pub fn ending_soon(
    url: &str,
    grant_id: &str,
    g: &GrantFacts<'_>,
    left: &str,
    justification: &str,
) -> Mail {
    let GrantFacts {
        target,
        entitlement,
        session_tail,
        ..
    } = g;
    let ends = g.ends.format_utc();
    compose(
        format!("Access ending soon: {target}"),
        &format!(
            "Your access to {target} ({entitlement}) ends at {ends}, in {left}. To keep working, ask for more time before then: your access goes on without a gap once it is approved. Sessions you open stay valid for up to {session_tail} after the end."
        ),
        &[("Account", target), ("Ends", &ends), ("Justification", justification)],
        (
            "Ask for more time",
            &format!("{url}/requests?extend={grant_id}#grant-{grant_id}"),
        ),
    )
}

// ------------------------------------------------------------ chat (issue #12, item 9)

/// Queues `message` for each webhook the entitlement's `policy.chat` names (outbox rows
/// addressed `chat:<name>`), in the caller's transaction, like mail.
pub async fn chat(
    conn: &mut AnyConnection,
    policy: &Policy,
    message: &ChatMessage,
    now: Timestamp,
) -> Result<()> {
    for name in &policy.chat {
        let to = format!("{}{name}", crate::chat::CHAT_PREFIX);
        store::enqueue_mail(conn, &to, &message.title, &message.text, "", now).await?;
    }
    Ok(())
}

/// One chat message: a title (what the outbox page lists) and the text posted, in Slack's
/// `mrkdwn` with everything people typed escaped ([`crate::chat::escape`]).
pub struct ChatMessage {
    pub title: String,
    pub text: String,
}

/// The title in bold, the body (already escaped), then the link.
fn chat_message(title: String, body: &str, (label, url): (&str, String)) -> ChatMessage {
    let text = format!(
        "*{}*\n{body}\n<{}|{}>",
        escape(&title),
        escape(&url),
        escape(label)
    );
    ChatMessage { title, text }
}

/// A new request that waits for approvers, with the link to decide it.
pub fn chat_request(
    url: &str,
    r: &RequestRow,
    requester: &str,
    entitlement: &str,
    now: Timestamp,
) -> ChatMessage {
    let how_long = format_duration(Duration::from_secs(r.duration_secs.max(0) as u64));
    let body = format!(
        "{} asks for {} for {how_long}{}.\n>{}",
        escape(requester),
        escape(entitlement),
        if r.starts_at > now {
            format!(", from {}", r.starts_at.format_utc())
        } else {
            String::new()
        },
        escape(&r.justification).replace('\n', "\n>")
    );
    chat_message(
        format!("Approval needed: {entitlement} for {requester}"),
        &body,
        ("Open the request", request_link(url, &r.access_request_id)),
    )
}

/// A request approved or rejected (by a person, or by the policy itself).
pub fn chat_decided(
    url: &str,
    request_id: &str,
    requester: &str,
    entitlement: &str,
    by: &str,
    outcome: RequestStatus,
) -> ChatMessage {
    chat_message(
        format!("Request {outcome}: {entitlement} for {requester}"),
        &format!(
            "{} {outcome} {}'s request for {}.",
            escape(by),
            escape(requester),
            escape(entitlement)
        ),
        ("Open the request", request_link(url, request_id)),
    )
}

/// Access granted, ended or failed.
pub fn chat_grant(
    url: &str,
    request_id: &str,
    holder: &str,
    g: &GrantFacts<'_>,
    status: GrantStatus,
    why: &str,
) -> Option<ChatMessage> {
    let (title, body) = match status {
        GrantStatus::Active => (
            format!("Access granted: {} to {holder}", g.target),
            format!(
                "{} has {} ({}) until {}.",
                escape(holder),
                escape(g.target),
                escape(g.entitlement),
                g.ends.format_utc()
            ),
        ),
        GrantStatus::Revoked => (
            format!("Access ended: {} for {holder}", g.target),
            format!(
                "{}'s access to {} has ended ({}).",
                escape(holder),
                escape(g.target),
                escape(why)
            ),
        ),
        GrantStatus::Failed => (
            format!("Access could not be granted: {} to {holder}", g.target),
            format!("{}: {}", escape(g.target), escape(why)),
        ),
        _ => return None,
    };
    Some(chat_message(
        title,
        &body,
        ("Open the request", request_link(url, request_id)),
    ))
}

/// A break-glass entitlement was used: it waits for an admin's review.
pub fn chat_break_glass(
    url: &str,
    request_id: &str,
    requester: &str,
    entitlement: &str,
    justification: &str,
) -> ChatMessage {
    chat_message(
        format!("Break-glass used: {entitlement} by {requester}"),
        &format!(
            "{} used {} at once; an admin must review it.\n>{}",
            escape(requester),
            escape(entitlement),
            escape(justification).replace('\n', "\n>")
        ),
        ("Review it", request_link(url, request_id)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MailSettings;

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
    fn zero_turns_a_nudge_off() {
        let mut s = MailSettings::default();
        assert_eq!(s.ending_soon_lead(), Some(Duration::from_secs(900)));
        assert_eq!(s.reminder_after(), Some(Duration::from_secs(4 * 3600)));
        s.reminder_after_secs = 0;
        assert_eq!(s.reminder_after(), None);
    }
}
