//! The "Approvals" page: requests waiting for the caller's decision, and the decisions they
//! made.

use super::when::When;
use super::widgets::{action_error, field_error, loaded, DecisionForm, TargetItems};
use crate::api::{approval_queue, Decide};
use crate::views::{DecisionView, RequestView};
use leptos::prelude::*;
use leptos_meta::Title;

#[component]
pub(super) fn ApprovalsPage() -> impl IntoView {
    let decide = ServerAction::<Decide>::new();
    let live = super::live::live_ticks();
    let data = Resource::new(
        move || (decide.version().get(), live.get()),
        |_| approval_queue(),
    );
    view! {
        <Title text="Approvals · Portcullis" />
        <h1>"Approvals"</h1>
        {action_error(decide.value())}
        {field_error(decide.value(), "comment")}
        {field_error(decide.value(), "verdict")}
        {loaded(data, move |a| {
            view! {
                <h2>"Waiting for you"</h2>
                {if a.pending.is_empty() {
                    view! { <p class="empty">"Nothing waits for your decision."</p> }
                        .into_any()
                } else {
                    view! {
                        <div class="cards">
                            {a
                                .pending
                                .into_iter()
                                .map(|r| view! { <ApprovalCard r decide /> })
                                .collect_view()}
                        </div>
                    }
                        .into_any()
                }}
                <h2>"Decided by you"</h2>
                <DecisionTable decisions=a.decided />
            }
        })}
    }
}

#[component]
fn ApprovalCard(r: RequestView, decide: ServerAction<Decide>) -> impl IntoView {
    let comment_id = format!("comment-{}", r.id);
    let request_id = r.id.clone();
    // Who approved it already, and at which step.
    let approved_by: Vec<String> = r
        .decisions
        .iter()
        .filter(|d| d.verdict == "approved")
        .map(|d| match d.step {
            Some(n) => format!("{} (step {n})", d.approver),
            None => d.approver.clone(),
        })
        .collect();
    view! {
        <article
            class="card"
            data-testid="approval-row"
            data-request-id=r.id.clone()
            data-entitlement=r.entitlement_id.clone()
            data-requester=r.requester_key.clone()
        >
            <h2>
                <a href=format!("/requests/{}", r.id) data-testid="request-link">
                    {r.requester.clone()} " → " {r.entitlement_name.clone()}
                </a>
            </h2>
            <p>
                <strong>"Why: "</strong>
                {r.justification.clone()}
            </p>
            {r.ticket.clone().map(|t| view! { <p><strong>"Ticket: "</strong>{t}</p> })}
            <p class="muted">
                {if r.extends.is_some() { "More time on access they hold: " } else { "For " }}
                {r.duration.clone()} " · asked " <When utc=r.created_at.clone() /> " · approvals "
                {format!("{}/{}", r.approvals, r.approvals_required)}
            </p>
            {r.window.clone().map(|w| view! { <p data-testid="approval-window"><strong>"Window: "</strong>{w}</p> })}
            {r.step.clone().map(|s| view! { <p data-testid="approval-step"><strong>{s}</strong></p> })}
            {r.history.clone().map(|h| view! { <p class="muted" data-testid="requester-history">{h}</p> })}
            {(!r.targets.is_empty()).then(|| view! {
                <ul class="targets" data-testid="approval-targets">
                    <TargetItems targets=r.targets.clone() item="approval-target" tail="session-tail" />
                </ul>
            })}
            {(!approved_by.is_empty()).then(|| view! {
                <p class="muted" data-testid="approved-by">"Approved so far by " {approved_by.join(", ")}</p>
            })}
            <DecisionForm request_id comment_id decide />
        </article>
    }
}

#[component]
fn DecisionTable(decisions: Vec<DecisionView>) -> impl IntoView {
    if decisions.is_empty() {
        return view! { <p class="empty">"No decisions yet."</p> }.into_any();
    }
    view! {
        <table>
            <thead>
                <tr>
                    <th>"Requester"</th>
                    <th>"Entitlement"</th>
                    <th>"Decision"</th>
                    <th>"Comment"</th>
                    <th>"When"</th>
                </tr>
            </thead>
            <tbody>
                {decisions
                    .into_iter()
                    .map(|d| {
                        view! {
                            <tr
                                data-testid="decided-row"
                                data-verdict=d.verdict.clone()
                                data-entitlement=d.entitlement_id.clone()
                                data-requester=d.requester_key.clone()
                            >
                                <td data-label="Requester">{d.requester.clone()}</td>
                                <td data-label="Entitlement">
                                    <a href=format!("/requests/{}", d.request_id)>{d.entitlement_name.clone()}</a>
                                </td>
                                <td data-label="Decision">
                                    <span class=format!("status {}", d.verdict)>{d.verdict.clone()}</span>
                                </td>
                                <td data-label="Comment">{d.comment.clone()}</td>
                                <td data-label="When" class="muted"><When utc=d.decided_at.clone() /></td>
                            </tr>
                        }
                    })
                    .collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}
