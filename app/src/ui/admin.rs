//! The admin overview: worker health, open alerts, parked mail, every live grant and request;
//! and the sub-navigation of the admin pages.

use super::my_access::{GrantTable, RequestTable};
use super::when::When;
use super::widgets::{action_error, field_error, loaded, outcome_for, ActionButton, AlertList};
use crate::api::{load_admin_overview, ResendMail, ReviewBreakGlass, RevokeGrant};
use crate::views::{AuditChainView, BreakGlassView, EntitlementStatusView, ParkedMailView};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;
use leptos_router::hooks::use_query_map;

#[component]
pub(super) fn AdminNav() -> impl IntoView {
    view! {
        <nav class="sub" aria-label="Admin">
            <A href="/admin">"Overview"</A>
            <A href="/admin/audit">"Audit log"</A>
            <A href="/admin/aws">"AWS"</A>
            <A href="/admin/entitlements">"Entitlements"</A>
            <A href="/admin/access">"Access"</A>
            <A href="/outbox">"Outbox"</A>
        </nav>
    }
}

#[component]
pub(super) fn AdminPage() -> impl IntoView {
    let revoke = ServerAction::<RevokeGrant>::new();
    let resend = ServerAction::<ResendMail>::new();
    let review = ServerAction::<ReviewBreakGlass>::new();
    let live = super::live::live_ticks();
    // Where the two long lists start (`?requests=` older, `?grants=` ending later).
    let query = use_query_map();
    let cursor = move |k: &str| query.with(|q| q.get(k).filter(|v| !v.trim().is_empty()));
    let data = Resource::new(
        move || {
            (
                revoke.version().get(),
                resend.version().get(),
                review.version().get(),
                live.get(),
                cursor("requests"),
                cursor("grants"),
            )
        },
        |(_, _, _, _, requests, grants)| load_admin_overview(requests, grants),
    );
    view! {
        <Title text="Admin · Portcullis" />
        <h1>"Admin"</h1>
        {action_error(revoke.value())}
        {action_error(resend.value())}
        {action_error(review.value())}
        {loaded(data, move |o| {
            view! {
                <AdminNav />
                <section class="health" data-testid="worker-health">
                    <span>"Queued jobs: " {o.worker.queued_jobs}</span>
                    <span>"Overdue: " {o.worker.overdue_jobs}</span>
                    <span>"Failing: " {o.worker.failing_jobs}</span>
                    {o.worker.oldest_overdue.map(|t| view! { <span>"Oldest overdue: " {t}</span> })}
                </section>
                <AuditChain chain=o.audit_chain />
                <BreakGlassReviews uses=o.break_glass review />
                {(!o.alerts.is_empty())
                    .then(|| {
                        view! {
                            <h2>"Alerts"</h2>
                            <AlertList alerts=o.alerts testid="alert" />
                        }
                    })}
                {(!o.parked_mail.is_empty())
                    .then(|| view! { <ParkedMail mail=o.parked_mail resend /> })}
                <h2 id="grants">"Live grants"</h2>
                <GrantTable grants=o.grants row_testid="admin-grant-row" end=None revoke=Some(revoke) />
                <Pager
                    first=o.paged.then(|| "/admin#grants".to_owned())
                    next=o.later_grants.map(|c| format!("/admin?grants={}#grants", crate::url::encode(&c)))
                    next_label="Grants ending later"
                    testid="grants-pager"
                />
                <h2 id="requests">"All requests"</h2>
                <RequestTable requests=o.requests cancel=None />
                <Pager
                    first=o.paged.then(|| "/admin#requests".to_owned())
                    next=o.older_requests.map(|c| format!("/admin?requests={}#requests", crate::url::encode(&c)))
                    next_label="Older requests"
                    testid="requests-pager"
                />
                <Entitlements entitlements=o.entitlements />
            }
        })}
        <super::dashboard::Dashboard />
    }
}

/// Links between the pages of a long list: back to the first, and on to the next. Plain
/// links, so they work without JavaScript and can be bookmarked.
#[component]
pub(super) fn Pager(
    first: Option<String>,
    next: Option<String>,
    next_label: &'static str,
    testid: &'static str,
) -> impl IntoView {
    (first.is_some() || next.is_some()).then(|| {
        view! {
            <nav class="pager" aria-label=format!("{next_label}: pages") data-testid=testid>
                {first.map(|href| view! { <a href=href>"First page"</a> })}
                {next.map(|href| view! { <a href=href rel="next" data-testid=format!("{testid}-next")>{next_label} " →"</a> })}
            </nav>
        }
    })
}

/// Every entitlement, live or retired (no longer in the configuration: nobody can ask for
/// it, and its live grants run to their end).
#[component]
fn Entitlements(entitlements: Vec<EntitlementStatusView>) -> impl IntoView {
    view! {
        <h2>"Entitlements"</h2>
        <table>
            <thead>
                <tr>
                    <th>"Entitlement"</th>
                    <th>"Approval"</th>
                    <th>"Up to"</th>
                    <th>"Status"</th>
                </tr>
            </thead>
            <tbody>
                {entitlements
                    .into_iter()
                    .map(|e| {
                        let status = if e.retired_at.is_some() { "retired" } else { "live" };
                        let id = e.id.clone();
                        view! {
                            <tr data-testid="entitlement-row" data-entitlement=id data-status=status>
                                <td data-label="Entitlement">
                                    <a href=format!("/admin/entitlements#{}", e.id)>{e.name}</a>
                                    <span class="muted">" " {e.id.clone()}</span>
                                </td>
                                <td data-label="Approval">{e.approval}</td>
                                <td data-label="Up to">{e.max_duration}</td>
                                <td data-label="Status">
                                    {match e.retired_at {
                                        Some(at) => {
                                            view! {
                                                <span class="badge warn">"retired"</span>
                                                <span class="muted">" since " {at}</span>
                                            }
                                                .into_any()
                                        }
                                        None => view! { <span class="badge ok">"live"</span> }.into_any(),
                                    }}
                                </td>
                            </tr>
                        }
                    })
                    .collect_view()}
            </tbody>
        </table>
    }
}

/// The latest verification of the audit chain: when, and how many events, or where it breaks.
#[component]
fn AuditChain(chain: Option<AuditChainView>) -> impl IntoView {
    let (class, text) = match chain {
        None => (
            "audit-chain",
            "Audit chain not verified yet (the maintenance worker checks it at start)".to_owned(),
        ),
        Some(c) if c.verified => (
            "audit-chain",
            format!("Audit chain verified at {}, {}", c.at, c.summary),
        ),
        Some(c) => (
            "audit-chain broken",
            format!("Audit chain NOT verified at {}: {}", c.at, c.summary),
        ),
    };
    view! {
        <p class=class data-testid="audit-chain">
            {text}
        </p>
    }
}

/// Messages the worker gave up on, each with a Resend button.
#[component]
fn ParkedMail(mail: Vec<ParkedMailView>, resend: ServerAction<ResendMail>) -> impl IntoView {
    view! {
        <h2>"Parked mail"</h2>
        <table>
            <thead>
                <tr>
                    <th>"To"</th>
                    <th>"Subject"</th>
                    <th>"Attempts"</th>
                    <th>"Last error"</th>
                    <th>
                        <span class="visually-hidden">"Actions"</span>
                    </th>
                </tr>
            </thead>
            <tbody>
                {mail
                    .into_iter()
                    .map(|m| {
                        let id = m.id.clone();
                        view! {
                            <tr data-testid="parked-mail" data-mail-id=m.id>
                                <td data-label="To">{m.to}</td>
                                <td data-label="Subject">
                                    {m.subject}
                                    <span class="muted">" " {m.created_at}</span>
                                </td>
                                <td data-label="Attempts">{m.attempts}</td>
                                <td data-label="Last error" class="muted">{m.last_error}</td>
                                <td>
                                    <ActionButton
                                        action=resend
                                        name="mail_id"
                                        value=id
                                        class="secondary"
                                        testid="resend-mail"
                                        label="Resend"
                                    />
                                </td>
                            </tr>
                        }
                    })
                    .collect_view()}
            </tbody>
        </table>
    }
}

/// Break-glass uses waiting for a review: an admin (never the user) says what they
/// checked. Unreviewed past the entitlement's `review_within_secs`, every admin is told.
#[component]
fn BreakGlassReviews(
    uses: Vec<BreakGlassView>,
    review: ServerAction<ReviewBreakGlass>,
) -> impl IntoView {
    view! {
        <section id="break-glass">
            <h2>"Break-glass uses to review"</h2>
            {if uses.is_empty() {
                view! { <p class="empty">"Every break-glass use has been reviewed."</p> }.into_any()
            } else {
                uses.into_iter()
                    .map(|u| {
                        let value = outcome_for(review.value(), u.request_id.clone());
                        let comment_id = format!("review-{}", u.request_id);
                        let (rid, href) = (u.request_id.clone(), format!("/requests/{}", u.request_id));
                        view! {
                            <article class="card" data-testid="break-glass-use" data-request-id=u.request_id.clone()>
                                <h3>
                                    <a href=href>{u.requester.clone()} " → " {u.entitlement.clone()}</a>
                                    {u.overdue.then(|| view! { <span class="badge warn" data-testid="review-overdue">"review overdue"</span> })}
                                </h3>
                                <p><strong>"Why: "</strong>{u.justification.clone()}</p>
                                <p class="muted">"Used " <When utc=u.used_at.clone() /></p>
                                <ActionForm action=review>
                                    <input type="hidden" name="request_id" value=rid />
                                    <label for=comment_id.clone()>"What you checked"</label>
                                    <textarea id=comment_id name="comment" rows="2" maxlength="1000"></textarea>
                                    {field_error(value, "comment")}
                                    <button type="submit" data-testid="mark-reviewed">"Mark reviewed"</button>
                                </ActionForm>
                            </article>
                        }
                    })
                    .collect_view()
                    .into_any()
            }}
        </section>
    }
}
