//! The "My access" page: the caller's grants and requests. Its tables also list everyone's on
//! the admin page.

use super::widgets::{action_error, loaded, ActionButton};
use crate::api::{load_my_access, CancelRequest, EndGrant, RevokeGrant};
use crate::views::{GrantView, RequestView};
use leptos::prelude::*;
use leptos_meta::Title;

#[component]
pub(super) fn MyAccessPage() -> impl IntoView {
    let cancel = ServerAction::<CancelRequest>::new();
    let end = ServerAction::<EndGrant>::new();
    let data = Resource::new(
        move || (cancel.version().get(), end.version().get()),
        |_| load_my_access(),
    );
    view! {
        <Title text="My access · Portcullis" />
        <h1>"My access"</h1>
        {action_error(cancel.value())}
        {action_error(end.value())}
        {loaded(data, move |my| {
            view! {
                <h2>"Access"</h2>
                <GrantTable grants=my.grants mine=true end=Some(end) revoke=None />
                <h2>"Requests"</h2>
                <RequestTable requests=my.requests cancel=Some(cancel) />
            }
        })}
    }
}

#[component]
pub(super) fn RequestTable(
    requests: Vec<RequestView>,
    cancel: Option<ServerAction<CancelRequest>>,
) -> impl IntoView {
    if requests.is_empty() {
        return view! { <p class="empty">"No requests yet."</p> }.into_any();
    }
    let row_testid = if cancel.is_some() {
        "request-row"
    } else {
        "admin-request-row"
    };
    view! {
        <table>
            <thead>
                <tr>
                    <th>"Entitlement"</th>
                    <th>"Requester"</th>
                    <th>"Why"</th>
                    <th>"For"</th>
                    <th>"Status"</th>
                    <th>"Asked"</th>
                    <th></th>
                </tr>
            </thead>
            <tbody>
                {requests
                    .into_iter()
                    .map(|r| {
                        let cancellable = r.status == "pending" || r.status == "approved";
                        let id = r.id.clone();
                        view! {
                            <tr
                                data-testid=row_testid
                                data-request-id=r.id.clone()
                                data-entitlement=r.entitlement_id.clone()
                                data-status=r.status.clone()
                                data-requester=r.requester_key.clone()
                            >
                                <td>{r.entitlement_name.clone()}</td>
                                <td>{r.requester.clone()}</td>
                                <td>
                                    {r.justification.clone()}
                                    {r.ticket.clone().map(|t| view! { <span class="badge">{t}</span> })}
                                </td>
                                <td>{r.duration.clone()}</td>
                                <td>
                                    <span class=format!("status {}", r.status)>{r.status.clone()}</span>
                                    <span class="muted">
                                        {format!(" {}/{}", r.approvals, r.approvals_required)}
                                    </span>
                                    {r.deciders.clone().map(|d| view! {
                                        <div class="muted" data-testid="deciders">{d}</div>
                                    })}
                                </td>
                                <td class="muted">{r.created_at.clone()}</td>
                                <td>
                                    {cancel
                                        .filter(|_| cancellable)
                                        .map(|action| {
                                            view! {
                                                <ActionButton
                                                    action
                                                    name="request_id"
                                                    value=id
                                                    class="secondary"
                                                    testid="cancel-request"
                                                    label="Cancel"
                                                />
                                            }
                                        })}
                                </td>
                            </tr>
                        }
                    })
                    .collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}

#[component]
pub(super) fn GrantTable(
    grants: Vec<GrantView>,
    mine: bool,
    end: Option<ServerAction<EndGrant>>,
    revoke: Option<ServerAction<RevokeGrant>>,
) -> impl IntoView {
    if grants.is_empty() {
        return view! { <p class="empty">"No access."</p> }.into_any();
    }
    let row_testid = if mine { "grant-row" } else { "admin-grant-row" };
    view! {
        <table>
            <thead>
                <tr>
                    <th>"Entitlement"</th>
                    <th>"Who"</th>
                    <th>"Account"</th>
                    <th>"Permission set"</th>
                    <th>"Status"</th>
                    <th>"Ends"</th>
                    <th></th>
                </tr>
            </thead>
            <tbody>
                {grants
                    .into_iter()
                    .map(|g| {
                        let live = g.status == "active" || g.status == "scheduled"
                            || g.status == "provisioning";
                        let id = g.id.clone();
                        let id2 = g.id.clone();
                        view! {
                            <tr
                                data-testid=row_testid
                                data-grant-id=g.id.clone()
                                data-entitlement=g.entitlement_id.clone()
                                data-status=g.status.clone()
                            >
                                <td>{g.entitlement_name.clone()}</td>
                                <td>{g.principal.clone()}</td>
                                <td>
                                    {g.account_name.clone()}
                                    <span class="muted">" " {g.account_id.clone()}</span>
                                </td>
                                <td>{g.permission_set.clone()}</td>
                                <td>
                                    <span class=format!("status {}", g.status)>{g.status.clone()}</span>
                                    {g.failure.clone().map(|f| view! { <p class="error">{f}</p> })}
                                    {g
                                        .trouble
                                        .clone()
                                        .map(|t| {
                                            view! {
                                                <p class="error" data-testid="grant-trouble">{t}</p>
                                            }
                                        })}
                                </td>
                                <td>
                                    {g.ends_at.clone()}
                                    {g
                                        .time_left
                                        .clone()
                                        .map(|t| {
                                            view! {
                                                <p>
                                                    <span data-testid="time-left">{t}</span>
                                                    " left"
                                                </p>
                                            }
                                        })}
                                    <p class="muted" title="Deleting an assignment does not end sessions already open">
                                        "Open sessions may last up to " {g.session_tail.clone()} " after the end."
                                    </p>
                                </td>
                                <td>
                                    {end
                                        .filter(|_| live)
                                        .map(|action| {
                                            view! {
                                                <ActionButton
                                                    action
                                                    name="grant_id"
                                                    value=id
                                                    class="secondary"
                                                    testid="end-grant"
                                                    label="End now"
                                                />
                                            }
                                        })}
                                    {revoke
                                        .filter(|_| live)
                                        .map(|action| {
                                            view! {
                                                <ActionButton
                                                    action
                                                    name="grant_id"
                                                    value=id2
                                                    class="danger"
                                                    testid="revoke-grant"
                                                    label="Revoke"
                                                />
                                            }
                                        })}
                                </td>
                            </tr>
                        }
                    })
                    .collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}
