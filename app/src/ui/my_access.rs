//! The "My access" page: the caller's grants and requests. Its tables also list everyone's on
//! the admin page.

use super::when::When;
use super::widgets::{action_error, field_error, loaded, outcome_for, ActionButton};
use crate::api::{load_my_access, CancelRequest, EndGrant, ExtendGrant, RevokeGrant};
use crate::views::{ExtendOffer, GrantView, RequestView};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

#[component]
pub(super) fn MyAccessPage() -> impl IntoView {
    let cancel = ServerAction::<CancelRequest>::new();
    let end = ServerAction::<EndGrant>::new();
    let extend = ServerAction::<ExtendGrant>::new();
    // `?extend={grant}` (the "ending soon" mail's link) opens that grant's Extend form.
    let open_extend = use_query_map().read_untracked().get("extend");
    let live = super::live::live_ticks();
    let data = Resource::new(
        move || {
            (
                cancel.version().get(),
                end.version().get(),
                extend.version().get(),
                live.get(),
            )
        },
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
                <GrantTable
                    grants=my.grants
                    row_testid="grant-row"
                    end=Some(end)
                    revoke=None
                    extend=extend
                    open_extend=open_extend.clone().unwrap_or_default()
                />
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
                    <th>
                        <span class="visually-hidden">"Actions"</span>
                    </th>
                </tr>
            </thead>
            <tbody>
                {requests
                    .into_iter()
                    .map(|r| {
                        // An approved extension's time is already part of the access.
                        let cancellable = r.status == "pending"
                            || (r.status == "approved" && r.extends.is_none());
                        let id = r.id.clone();
                        view! {
                            <tr
                                data-testid=row_testid
                                data-request-id=r.id.clone()
                                data-entitlement=r.entitlement_id.clone()
                                data-status=r.status.clone()
                                data-requester=r.requester_key.clone()
                            >
                                <td data-label="Entitlement">
                                    <a href=format!("/requests/{}", r.id) data-testid="request-link">
                                        {r.entitlement_name.clone()}
                                    </a>
                                    {r.extends.clone().map(|original| view! {
                                        " "
                                        <a href=format!("/requests/{original}") class="badge" data-testid="extension-of">
                                            "more time"
                                        </a>
                                    })}
                                </td>
                                <td data-label="Requester">{r.requester.clone()}</td>
                                <td data-label="Why">
                                    {r.justification.clone()}
                                    {r.ticket.clone().map(|t| view! { <span class="badge">{t}</span> })}
                                </td>
                                <td data-label="For">{r.duration.clone()}</td>
                                <td data-label="Status">
                                    <span class=format!("status {}", r.status)>{r.status.clone()}</span>
                                    <span class="muted">
                                        {format!(" {}/{}", r.approvals, r.approvals_required)}
                                    </span>
                                    {r.deciders.clone().map(|d| view! {
                                        <div class="muted" data-testid="deciders">{d}</div>
                                    })}
                                    {r.starts.clone().map(|s| view! {
                                        <div class="muted" data-testid="starts">"Starts " {s}</div>
                                    })}
                                </td>
                                <td data-label="Asked" class="muted"><When utc=r.created_at.clone() /></td>
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
    /// Each row's `data-testid` (`grant-row` on My access, `admin-grant-row`...).
    row_testid: &'static str,
    end: Option<ServerAction<EndGrant>>,
    revoke: Option<ServerAction<RevokeGrant>>,
    /// The holder's own page: active grants offer "Extend".
    #[prop(optional)]
    extend: Option<ServerAction<ExtendGrant>>,
    /// The grant whose Extend form starts open.
    #[prop(optional)]
    open_extend: Option<String>,
) -> impl IntoView {
    if grants.is_empty() {
        return view! { <p class="empty">"No access."</p> }.into_any();
    }
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
                    <th>
                        <span class="visually-hidden">"Actions"</span>
                    </th>
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
                        let offer = g.extend.clone().zip(extend).map(|(offer, action)| {
                            let open = open_extend.as_deref() == Some(g.id.as_str());
                            view! { <ExtendForm grant_id=g.id.clone() offer action open /> }
                        });
                        view! {
                            <tr
                                id=format!("grant-{}", g.id)
                                data-testid=row_testid
                                data-grant-id=g.id.clone()
                                data-entitlement=g.entitlement_id.clone()
                                data-status=g.status.clone()
                            >
                                <td data-label="Entitlement">{g.entitlement_name.clone()}</td>
                                <td data-label="Who">{g.principal.clone()}</td>
                                <td data-label="Account">
                                    {g.account_name.clone()}
                                    <span class="muted">" " {g.account_id.clone()}</span>
                                </td>
                                <td data-label="Permission set">{g.permission_set.clone()}</td>
                                <td data-label="Status">
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
                                <td data-label="Ends">
                                    {g.starts_in.clone().map(|s| view! {
                                        <p>"Starts in " <span data-testid="starts-in">{s}</span></p>
                                    })}
                                    <When utc=g.ends_at.clone() />
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
                                    {offer}
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

/// "Extend" on an active grant: more time without a gap, decided by the entitlement's
/// policy. Or why it cannot be extended now.
#[component]
fn ExtendForm(
    grant_id: String,
    offer: ExtendOffer,
    action: ServerAction<ExtendGrant>,
    open: bool,
) -> impl IntoView {
    if let Some(pending) = offer.pending {
        return view! {
            <p class="muted" data-testid="extension-pending">
                "More time was asked for: "
                <a href=format!("/requests/{pending}")>"waiting for a decision"</a>
            </p>
        }
        .into_any();
    }
    let Some(up_to) = offer.up_to else {
        return view! {
            <p class="muted" data-testid="extend-maxed">
                "Cannot be extended: it may last " {offer.max_total} " in all."
            </p>
        }
        .into_any();
    };
    // Only this grant's outcome: errors name the grant they are about.
    let value = outcome_for(action.value(), grant_id.clone());
    let duration_id = format!("extend-duration-{grant_id}");
    let why_id = format!("extend-why-{grant_id}");
    let ticket_id = format!("extend-ticket-{grant_id}");
    let hint = match offer.approves_itself_up_to {
        Some(limit) => {
            format!("Up to {limit} more is approved at once; more than that goes to the approvers.")
        }
        None => "The entitlement's approvers decide; your access goes on meanwhile.".to_owned(),
    };
    view! {
        <details class="extend" data-testid="extend" open=open>
            <summary>"Extend"</summary>
            <ActionForm action>
                <input type="hidden" name="grant_id" value=grant_id />
                <input type="hidden" name="seen_end" value=offer.seen_end.to_string() />
                <label for=duration_id.clone()>"More time (up to " {up_to} ")"</label>
                <input id=duration_id name="duration" type="text" value=offer.suggested />
                {field_error(value, "duration")}
                <label for=why_id.clone()>"Why"</label>
                <textarea id=why_id name="justification" rows="2" maxlength="1000"></textarea>
                {field_error(value, "justification")}
                {offer.require_ticket.then(|| view! {
                    <label for=ticket_id.clone()>"Ticket"</label>
                    <input
                        id=ticket_id.clone()
                        name="ticket"
                        type="text"
                        maxlength="64"
                        placeholder=offer.ticket_example.clone().unwrap_or_else(|| "CHG-1234".into())
                    />
                    {field_error(value, "ticket")}
                })}
                <p class="muted hint">{hint} " It may last " {offer.max_total} " in all."</p>
                {action_error(value)}
                <button type="submit" data-testid="extend-submit" disabled=move || action.pending().get()>
                    "Ask for more time"
                </button>
            </ActionForm>
        </details>
    }
    .into_any()
}
