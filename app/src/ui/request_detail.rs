//! A request's own page (`/requests/{id}`): who asked for what and why, who decides, each
//! decision, each grant and where it stands, and the audit trail. Every mail about the
//! request links here. An approver decides here with the same `decide` as on Approvals: a
//! fresh sign-in first when theirs is too old, every check made again on the server.

use super::my_access::GrantTable;
use super::when::When;
use super::widgets::{
    action_error, field_error, ActionButton, DecisionForm, ErrorBox, TargetItems,
};
use crate::api::{load_request, CancelRequest, Decide};
use crate::error::AppError;
use crate::views::{AuditView, BundlePartView, DecisionView, RequestDetail, RequestView};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

#[component]
pub(super) fn RequestDetailPage() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.read().get("id").unwrap_or_default();
    let decide = ServerAction::<Decide>::new();
    let cancel = ServerAction::<CancelRequest>::new();
    let data = Resource::new(
        move || (id(), decide.version().get(), cancel.version().get()),
        |(id, _, _)| load_request(id),
    );
    view! {
        <Title text="Request · Portcullis" />
        <p class="muted">
            <a href="/requests">"My access"</a>
            " · "
            <a href="/approvals">"Approvals"</a>
        </p>
        {action_error(decide.value())}
        {action_error(cancel.value())}
        <Suspense fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(d) => view! { <Detail d decide cancel /> }.into_any(),
                    Err(e) => {
                        not_found_status(&e);
                        view! {
                            <h1>"Request"</h1>
                            <ErrorBox error=e />
                        }
                            .into_any()
                    }
                }
            })}
        </Suspense>
    }
}

/// A request the caller may not see reads as one that does not exist, and answers 404.
fn not_found_status(e: &AppError) {
    #[cfg(feature = "ssr")]
    if matches!(e, AppError::NotFound(_)) {
        if let Some(res) = use_context::<leptos_axum::ResponseOptions>() {
            res.set_status(http::StatusCode::NOT_FOUND);
        }
    }
    #[cfg(not(feature = "ssr"))]
    let _ = e;
}

#[component]
fn Detail(
    d: RequestDetail,
    decide: ServerAction<Decide>,
    cancel: ServerAction<CancelRequest>,
) -> impl IntoView {
    let r = d.request.clone();
    view! {
        <article
            data-testid="request-detail"
            data-request-id=r.id.clone()
            data-status=r.status.clone()
            data-viewer=d.viewer.clone()
        >
            <h1>{r.requester.clone()} " → " {r.entitlement_name.clone()}</h1>
            <Facts r=r.clone() approval=d.approval.clone() bundle=d.bundle.clone() />
            {d.may_decide.then(|| view! { <DecideForm id=r.id.clone() reauth=d.reauth_needed decide /> })}
            {d.may_cancel.then(|| view! {
                <ActionButton
                    action=cancel
                    name="request_id"
                    value=r.id.clone()
                    class="secondary"
                    testid="cancel-request"
                    label="Cancel this request"
                />
            })}
            <h2>"Decisions"</h2>
            <Decisions decisions=r.decisions.clone() />
            <h2>"Access"</h2>
            {if d.grants.is_empty() {
                view! { <p class="empty">"No access granted by this request."</p> }.into_any()
            } else {
                view! { <GrantTable grants=d.grants row_testid="detail-grant-row" end=None revoke=None /> }.into_any()
            }}
            <h2>"History"</h2>
            <History events=d.history />
        </article>
    }
}

#[component]
fn Facts(r: RequestView, approval: String, bundle: Vec<BundlePartView>) -> impl IntoView {
    view! {
        <dl class="facts">
            <dt>"Status"</dt>
            <dd>
                <span class=format!("status {}", r.status) data-testid="detail-status">{r.status.clone()}</span>
                <span class="muted">{format!(" approvals {}/{}", r.approvals, r.approvals_required)}</span>
            </dd>
            {r.step.clone().map(|s| view! { <dt>"Waiting at"</dt><dd data-testid="detail-step">{s}</dd> })}
            <dt>"Why"</dt>
            <dd data-testid="detail-justification">{r.justification.clone()}</dd>
            {r.ticket.clone().map(|t| view! { <dt>"Ticket"</dt><dd>{t}</dd> })}
            {match r.extends.clone() {
                Some(original) => view! {
                    <dt>"More time"</dt>
                    <dd>
                        {r.duration.clone()} " on "
                        <a href=format!("/requests/{original}") data-testid="extends-link">"the access it extends"</a>
                    </dd>
                }
                    .into_any(),
                None => view! {
                    <dt>"For"</dt>
                    <dd>{r.duration.clone()}</dd>
                }
                    .into_any(),
            }}
            {r.starts.clone().map(|s| view! { <dt>"Starts"</dt><dd data-testid="detail-starts">{s}</dd> })}
            {r.window.clone().map(|w| view! { <dt>"Window"</dt><dd data-testid="detail-window">{w}</dd> })}
            {(!r.targets.is_empty()).then(|| view! {
                <dt>"Grants"</dt>
                <dd>
                    <ul class="plain">
                        <TargetItems targets=r.targets.clone() item="detail-target" tail="detail-session-tail" />
                    </ul>
                </dd>
            })}
            {(!bundle.is_empty()).then(|| view! {
                <dt>"Asked together with"</dt>
                <dd>
                    <ul class="plain">
                        {bundle
                            .into_iter()
                            .map(|p| view! {
                                <li data-testid="bundle-part">
                                    <a href=format!("/requests/{}", p.id)>{p.entitlement_name}</a>
                                    " "
                                    <span class=format!("status {}", p.status)>{p.status.clone()}</span>
                                </li>
                            })
                            .collect_view()}
                    </ul>
                </dd>
            })}
            <dt>"Asked"</dt>
            <dd><When utc=r.created_at.clone() /></dd>
            <dt>"Approval"</dt>
            <dd>{approval}</dd>
            {r.deciders.clone().map(|who| view! {
                <dt>"Who decides"</dt>
                <dd data-testid="deciders">{who}</dd>
            })}
        </dl>
    }
}

#[component]
fn DecideForm(id: String, reauth: bool, decide: ServerAction<Decide>) -> impl IntoView {
    let reauth_href = format!(
        "/auth/reauth?return_to={}",
        crate::url::encode(&format!("/requests/{id}"))
    );
    view! {
        <section class="card" data-testid="decide-here">
            <h2>"Your decision"</h2>
            {reauth.then(|| view! {
                <p class="notice" data-testid="reauth-needed">
                    "Deciding needs a recent sign-in. "
                    <a href=reauth_href data-testid="reauth">"Sign in again"</a>
                    " first, and you come back here."
                </p>
            })}
            {field_error(decide.value(), "comment")}
            <DecisionForm request_id=id comment_id="decide-comment".to_owned() decide />
        </section>
    }
}

#[component]
fn Decisions(decisions: Vec<DecisionView>) -> impl IntoView {
    if decisions.is_empty() {
        return view! { <p class="empty">"Nobody has decided yet."</p> }.into_any();
    }
    view! {
        <ul class="decisions">
            {decisions
                .into_iter()
                .map(|d| {
                    view! {
                        <li data-testid="detail-decision" data-verdict=d.verdict.clone()>
                            <strong>{d.approver}</strong>
                            " "
                            <span class=format!("status {}", d.verdict)>{d.verdict.clone()}</span>
                            {d.step.map(|n| format!(" at step {n}"))}
                            {(!d.comment.is_empty()).then(|| format!(": {}", d.comment))}
                            <span class="muted">" " <When utc=d.decided_at /></span>
                        </li>
                    }
                })
                .collect_view()}
        </ul>
    }
    .into_any()
}

#[component]
fn History(events: Vec<AuditView>) -> impl IntoView {
    if events.is_empty() {
        return view! { <p class="empty">"No events."</p> }.into_any();
    }
    view! {
        <table>
            <thead>
                <tr>
                    <th>"When"</th>
                    <th>"Who"</th>
                    <th>"What"</th>
                    <th>"Detail"</th>
                </tr>
            </thead>
            <tbody>
                {events
                    .into_iter()
                    .map(|a| {
                        let action = a.action.clone();
                        view! {
                            <tr data-testid="history-row" data-action=action>
                                <td data-label="When" class="muted">{a.at}</td>
                                <td data-label="Who">{a.actor}</td>
                                <td data-label="What">{a.action}</td>
                                <td data-label="Detail">{a.detail}</td>
                            </tr>
                        }
                    })
                    .collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}
