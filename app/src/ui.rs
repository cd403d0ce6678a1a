//! Pages and components. Every form is an `ActionForm`, so it also works without
//! WebAssembly: the browser posts it, the server redirects back, errors come back in the URL.

use crate::api::*;
use crate::error::AppError;
use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Stylesheet, Title};
use leptos_router::{
    components::{Route, Router, Routes, A},
    hooks::use_query_map,
    path, SsrMode,
};

pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
                <AutoReload options=options.clone() />
                <HydrationScripts options />
                <MetaTags />
            </head>
            <body>
                <App />
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    let me = Resource::new(|| (), |_| whoami());
    view! {
        <Stylesheet id="leptos" href="/pkg/portcullis.css" />
        <Title text="Portcullis" />
        <Router>
            <Header me />
            <main>
                <Routes fallback=|| view! { <p class="empty">"This page does not exist."</p> }>
                    <Route path=path!("/") view=RequestPage ssr=SsrMode::Async />
                    <Route path=path!("/requests") view=MyAccessPage ssr=SsrMode::Async />
                    <Route path=path!("/approvals") view=ApprovalsPage ssr=SsrMode::Async />
                    <Route path=path!("/admin") view=AdminPage ssr=SsrMode::Async />
                    <Route path=path!("/admin/audit") view=AuditPage ssr=SsrMode::Async />
                    <Route path=path!("/admin/aws") view=AwsPage ssr=SsrMode::Async />
                    <Route path=path!("/outbox") view=OutboxPage ssr=SsrMode::Async />
                </Routes>
            </main>
        </Router>
    }
}

#[component]
fn Header(me: Resource<Result<Option<Me>, AppError>>) -> impl IntoView {
    view! {
        <header class="top">
            <a class="brand" href="/">
                "Portcullis"
            </a>
            <Suspense>
                {move || Suspend::new(async move {
                    match me.await {
                        Ok(Some(me)) => {
                            view! {
                                <nav>
                                    <A href="/" attr:data-testid="nav-request">
                                        "Request access"
                                    </A>
                                    <A href="/requests" attr:data-testid="nav-my">
                                        "My access"
                                    </A>
                                    <A href="/approvals" attr:data-testid="nav-approvals">
                                        "Approvals"
                                    </A>
                                    <Show when=move || me.is_admin>
                                        <A href="/admin" attr:data-testid="nav-admin">
                                            "Admin"
                                        </A>
                                    </Show>
                                    <Show when=move || me.demo || me.is_admin>
                                        <A href="/outbox" attr:data-testid="nav-outbox">
                                            "Outbox"
                                        </A>
                                    </Show>
                                </nav>
                                <div class="who">
                                    <span data-testid="whoami">{me.display_name.clone()}</span>
                                    {me.demo.then(|| view! { <span class="badge">"demo"</span> })}
                                    <form method="post" action="/auth/logout">
                                        <button type="submit" class="link" data-testid="sign-out">
                                            "Sign out"
                                        </button>
                                    </form>
                                </div>
                            }
                                .into_any()
                        }
                        _ => view! { <span></span> }.into_any(),
                    }
                })}
            </Suspense>
        </header>
    }
}

#[component]
fn ErrorBox(error: AppError) -> impl IntoView {
    let forbidden = matches!(error, AppError::Forbidden(_));
    view! {
        <p class="error" role="alert" data-testid=if forbidden { "forbidden" } else { "error" }>
            {error.to_string()}
        </p>
    }
}

/// A resource on the page: "Loading…", then `render(value)`, or the error.
fn loaded<T, V>(
    data: Resource<Result<T, AppError>>,
    render: impl Fn(T) -> V + Clone + Send + Sync + 'static,
) -> impl IntoView
where
    T: Clone + Send + Sync + serde::Serialize + serde::de::DeserializeOwned + 'static,
    V: IntoView + 'static,
{
    view! {
        <Suspense fallback=|| view! { <p>"Loading…"</p> }>
            {move || {
                let render = render.clone();
                Suspend::new(async move {
                    match data.await {
                        Ok(value) => render(value).into_any(),
                        Err(e) => view! { <ErrorBox error=e /> }.into_any(),
                    }
                })
            }}
        </Suspense>
    }
}

/// Shows an action's outcome: a general error, or nothing (field errors sit by their fields).
fn action_error<T, S>(value: S) -> impl IntoView
where
    T: Clone + Send + Sync + 'static,
    S: Get<Value = Option<Result<T, AppError>>> + Clone + Send + Sync + 'static,
{
    move || match value.get() {
        Some(Err(AppError::Invalid(_))) | None | Some(Ok(_)) => None,
        Some(Err(e)) => Some(view! { <ErrorBox error=e /> }),
    }
}

fn field_error<T, S>(value: S, field: &'static str) -> impl IntoView
where
    T: Clone + Send + Sync + 'static,
    S: Get<Value = Option<Result<T, AppError>>> + Clone + Send + Sync + 'static,
{
    move || {
        value
            .get()
            .and_then(|r| r.err())
            .and_then(|e| e.field(field))
            .map(|m| {
                view! {
                    <p class="field-error" data-testid=format!("error-{field}")>
                        {m}
                    </p>
                }
            })
    }
}

// ---------------------------------------------------------------- request access

#[component]
fn RequestPage() -> impl IntoView {
    let entitlements = Resource::new(|| (), |_| list_entitlements());
    view! {
        <Title text="Request access · Portcullis" />
        <h1>"Request access"</h1>
        <p class="lead">
            "Entitlements your groups make you eligible for. Access starts when approved and ends by itself."
        </p>
        {loaded(entitlements, move |value| match value {
            list if list.is_empty() => {
                view! {
                    <p class="empty">"You are not eligible for any entitlement yet."</p>
                }
                    .into_any()
            }
            list => {
                view! {
                    <div class="cards">
                        {list
                            .into_iter()
                            .map(|card| view! { <EntitlementForm card /> })
                            .collect_view()}
                    </div>
                }
                    .into_any()
            }
        })}
    }
}

#[component]
fn EntitlementForm(card: EntitlementCard) -> impl IntoView {
    let action = ServerAction::<CreateRequest>::new();
    let id = card.id.clone();
    let own = card.id.clone();
    let raw = action.value();
    // Only this card's outcome: errors name the entitlement they are about.
    let value = Signal::derive(move || {
        raw.get().filter(|r| match r {
            Err(AppError::Invalid(fields)) => fields
                .iter()
                .find(|f| f.field == "for")
                .is_none_or(|f| f.message == own),
            _ => true,
        })
    });
    let testid = format!("entitlement-{}", card.id);
    let textarea_id = format!("just-{}", card.id);
    let duration_id = format!("dur-{}", card.id);
    let ticket_id = format!("ticket-{}", card.id);
    view! {
        <article class="card" data-testid=testid>
            <h2>
                {card.name.clone()}
                {card.auto_approve.then(|| view! { <span class="badge ok">"auto-approved"</span> })}
                {card.break_glass.then(|| view! { <span class="badge warn">"break-glass"</span> })}
            </h2>
            <p>{card.description.clone()}</p>
            <ul class="targets">
                {card
                    .targets
                    .iter()
                    .map(|t| {
                        view! {
                            <li>
                                <strong>{t.permission_set.clone()}</strong>
                                " on "
                                {t.scope.clone()}
                                {(!t.session_duration.is_empty())
                                    .then(|| {
                                        view! {
                                            <span class="muted">
                                                " (sessions last up to " {t.session_duration.clone()} ")"
                                            </span>
                                        }
                                    })}
                            </li>
                        }
                    })
                    .collect_view()}
            </ul>
            <p class="muted">{card.approval.clone()} " · up to " {card.max_duration.clone()}</p>
            <ActionForm action>
                <input type="hidden" name="entitlement" value=id />
                <label for=textarea_id.clone()>"Justification"</label>
                <textarea id=textarea_id name="justification" rows="2" maxlength="1000"></textarea>
                {field_error(value, "justification")}
                <div class="row">
                    <div>
                        <label for=duration_id.clone()>"Duration"</label>
                        <input
                            id=duration_id
                            name="duration"
                            type="text"
                            value=card.default_duration.clone()
                            placeholder="e.g. 30m, 1h, 1h30m"
                        />
                        {field_error(value, "duration")}
                    </div>
                    {card
                        .require_ticket
                        .then(|| {
                            view! {
                                <div>
                                    <label for=ticket_id.clone()>"Ticket"</label>
                                    <input
                                        id=ticket_id.clone()
                                        name="ticket"
                                        type="text"
                                        placeholder="CHG-1234"
                                    />
                                    {field_error(value, "ticket")}
                                </div>
                            }
                        })}
                </div>
                {field_error(value, "entitlement")}
                {action_error(value)}
                <button type="submit" data-testid="submit-request" disabled=move || action.pending().get()>
                    "Request access"
                </button>
                {move || {
                    matches!(value.get(), Some(Ok(_)))
                        .then(|| {
                            view! {
                                <p class="success" data-testid="request-created">
                                    "Request sent. " <a href="/requests">"Follow it in My access"</a>
                                </p>
                            }
                        })
                }}
            </ActionForm>
        </article>
    }
}

// ---------------------------------------------------------------- my access

#[component]
fn MyAccessPage() -> impl IntoView {
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
fn RequestTable(
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
                                </td>
                                <td class="muted">{r.created_at.clone()}</td>
                                <td>
                                    {cancel
                                        .filter(|_| cancellable)
                                        .map(|action| {
                                            view! {
                                                <ActionForm action>
                                                    <input type="hidden" name="request_id" value=id />
                                                    <button type="submit" class="secondary" data-testid="cancel-request">
                                                        "Cancel"
                                                    </button>
                                                </ActionForm>
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
fn GrantTable(
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
                                                <ActionForm action>
                                                    <input type="hidden" name="grant_id" value=id />
                                                    <button type="submit" class="secondary" data-testid="end-grant">
                                                        "End now"
                                                    </button>
                                                </ActionForm>
                                            }
                                        })}
                                    {revoke
                                        .filter(|_| live)
                                        .map(|action| {
                                            view! {
                                                <ActionForm action>
                                                    <input type="hidden" name="grant_id" value=id2 />
                                                    <button type="submit" class="danger" data-testid="revoke-grant">
                                                        "Revoke"
                                                    </button>
                                                </ActionForm>
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

// ---------------------------------------------------------------- approvals

#[component]
fn ApprovalsPage() -> impl IntoView {
    let decide = ServerAction::<Decide>::new();
    let data = Resource::new(move || decide.version().get(), |_| approval_queue());
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
    view! {
        <article
            class="card"
            data-testid="approval-row"
            data-request-id=r.id.clone()
            data-entitlement=r.entitlement_id.clone()
            data-requester=r.requester_key.clone()
        >
            <h2>{r.requester.clone()} " → " {r.entitlement_name.clone()}</h2>
            <p>
                <strong>"Why: "</strong>
                {r.justification.clone()}
            </p>
            {r.ticket.clone().map(|t| view! { <p><strong>"Ticket: "</strong>{t}</p> })}
            <p class="muted">
                "For " {r.duration.clone()} " · asked " {r.created_at.clone()} " · approvals "
                {format!("{}/{}", r.approvals, r.approvals_required)}
            </p>
            <ActionForm action=decide>
                <input type="hidden" name="request_id" value=request_id />
                <label for=comment_id.clone()>"Comment"</label>
                <textarea id=comment_id name="comment" rows="2" maxlength="1000"></textarea>
                <div class="row">
                    <button type="submit" name="verdict" value="approve" data-testid="approve">
                        "Approve"
                    </button>
                    <button type="submit" name="verdict" value="reject" class="danger" data-testid="reject">
                        "Reject"
                    </button>
                </div>
            </ActionForm>
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
                                <td>{d.requester.clone()}</td>
                                <td>{d.entitlement_name.clone()}</td>
                                <td>
                                    <span class=format!("status {}", d.verdict)>{d.verdict.clone()}</span>
                                </td>
                                <td>{d.comment.clone()}</td>
                                <td class="muted">{d.decided_at.clone()}</td>
                            </tr>
                        }
                    })
                    .collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}

// ---------------------------------------------------------------- admin

#[component]
fn AdminNav() -> impl IntoView {
    view! {
        <nav class="sub">
            <A href="/admin">"Overview"</A>
            <A href="/admin/audit">"Audit log"</A>
            <A href="/admin/aws">"AWS"</A>
            <A href="/outbox">"Outbox"</A>
        </nav>
    }
}

#[component]
fn AdminPage() -> impl IntoView {
    let revoke = ServerAction::<RevokeGrant>::new();
    let resend = ServerAction::<ResendMail>::new();
    let data = Resource::new(
        move || (revoke.version().get(), resend.version().get()),
        |_| load_admin_overview(),
    );
    view! {
        <Title text="Admin · Portcullis" />
        <h1>"Admin"</h1>
        {action_error(revoke.value())}
        {action_error(resend.value())}
        {loaded(data, move |o| {
            view! {
                <AdminNav />
                <section class="health" data-testid="worker-health">
                    <span>"Queued jobs: " {o.worker.queued_jobs}</span>
                    <span>"Overdue: " {o.worker.overdue_jobs}</span>
                    <span>"Failing: " {o.worker.failing_jobs}</span>
                    {o.worker.oldest_overdue.map(|t| view! { <span>"Oldest overdue: " {t}</span> })}
                </section>
                {(!o.alerts.is_empty())
                    .then(|| {
                        view! {
                            <h2>"Alerts"</h2>
                            <AlertList alerts=o.alerts testid="alert" />
                        }
                    })}
                {(!o.parked_mail.is_empty())
                    .then(|| view! { <ParkedMail mail=o.parked_mail resend /> })}
                <h2>"Live grants"</h2>
                <GrantTable grants=o.grants mine=false end=None revoke=Some(revoke) />
                <h2>"All requests"</h2>
                <RequestTable requests=o.requests cancel=None />
            }
        })}
    }
}

/// Open alerts, newest first, each with its kind.
#[component]
fn AlertList(alerts: Vec<AlertView>, testid: &'static str) -> impl IntoView {
    view! {
        <ul class="alerts">
            {alerts
                .into_iter()
                .map(|a| {
                    let kind = a.kind.clone();
                    view! {
                        <li data-testid=testid data-kind=kind>
                            <strong>{a.kind}</strong>
                            " "
                            {a.message}
                            <span class="muted">" " {a.at}</span>
                        </li>
                    }
                })
                .collect_view()}
        </ul>
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
                    <th></th>
                </tr>
            </thead>
            <tbody>
                {mail
                    .into_iter()
                    .map(|m| {
                        let id = m.id.clone();
                        view! {
                            <tr data-testid="parked-mail" data-mail-id=m.id>
                                <td>{m.to}</td>
                                <td>
                                    {m.subject}
                                    <span class="muted">" " {m.created_at}</span>
                                </td>
                                <td>{m.attempts}</td>
                                <td class="muted">{m.last_error}</td>
                                <td>
                                    <ActionForm action=resend>
                                        <input type="hidden" name="mail_id" value=id />
                                        <button type="submit" class="secondary" data-testid="resend-mail">
                                            "Resend"
                                        </button>
                                    </ActionForm>
                                </td>
                            </tr>
                        }
                    })
                    .collect_view()}
            </tbody>
        </table>
    }
}

#[component]
fn AuditPage() -> impl IntoView {
    let query = use_query_map();
    let filter = move || {
        let q = query.get();
        let get = |k: &str| q.get(k).filter(|v| !v.trim().is_empty());
        AuditFilter {
            person: get("person"),
            entitlement: get("entitlement"),
            action: get("action"),
        }
    };
    let data = Resource::new(filter, |f| audit_log(f.person, f.entitlement, f.action));
    view! {
        <Title text="Audit log · Portcullis" />
        <h1>"Audit log"</h1>
        <AdminNav />
        <form method="get" action="/admin/audit" class="filters">
            <input name="person" placeholder="person (email or name)" value=move || filter().person />
            <input name="entitlement" placeholder="entitlement id" value=move || filter().entitlement />
            <input name="action" placeholder="action, e.g. request.approved" value=move || filter().action />
            <button type="submit" data-testid="audit-filter">
                "Filter"
            </button>
            <a href="/admin/audit.csv" class="button secondary">"Export CSV"</a>
        </form>
        {loaded(data, move |value| match value {
            rows if rows.is_empty() => {
                view! { <p class="empty">"No audit events match."</p> }.into_any()
            }
            rows => {
                view! {
                    <table>
                        <thead>
                            <tr>
                                <th>"#"</th>
                                <th>"When"</th>
                                <th>"Who"</th>
                                <th>"Action"</th>
                                <th>"Subject"</th>
                                <th>"Entitlement"</th>
                                <th>"Detail"</th>
                            </tr>
                        </thead>
                        <tbody>
                            {rows
                                .into_iter()
                                .map(|a| {
                                    let action = a.action.clone();
                                    view! {
                                        <tr data-testid="audit-row" data-action=action>
                                            <td class="muted">{a.seq}</td>
                                            <td class="muted">{a.at}</td>
                                            <td>{a.actor}</td>
                                            <td>{a.action}</td>
                                            <td class="muted">{a.subject}</td>
                                            <td>{a.entitlement}</td>
                                            <td>{a.detail}</td>
                                        </tr>
                                    }
                                })
                                .collect_view()}
                        </tbody>
                    </table>
                }
                    .into_any()
            }
        })}
    }
}

#[component]
fn AwsPage() -> impl IntoView {
    let upkeep = ServerAction::<RunUpkeep>::new();
    // A run in flight reports its progress: look again every two seconds while one runs,
    // and for half a minute after asking for one (it may take a moment to start).
    let tick = RwSignal::new(0u32);
    let running = RwSignal::new(false);
    let polls_left = RwSignal::new(0u32);
    Effect::new(move |_| {
        if upkeep.version().get() > 0 {
            polls_left.set(15);
        }
    });
    Effect::new(move |_| {
        if let Ok(handle) = set_interval_with_handle(
            move || {
                if running.get_untracked() || polls_left.get_untracked() > 0 {
                    polls_left.update(|n| *n = n.saturating_sub(1));
                    tick.update(|t| *t = t.wrapping_add(1));
                }
            },
            std::time::Duration::from_secs(2),
        ) {
            on_cleanup(move || handle.clear());
        }
    });
    let overview = Resource::new(
        move || (tick.get(), upkeep.version().get()),
        |_| load_aws_overview(),
    );
    let assignments = Resource::new(move || upkeep.version().get(), |_| aws_assignments());
    view! {
        <Title text="AWS · Portcullis" />
        <h1>"AWS"</h1>
        <AdminNav />
        {action_error(upkeep.value())}
        <Transition fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                match overview.await {
                    Ok(o) => {
                        running
                            .set(
                                o.catalog_runs.iter().chain(&o.reconcile_runs).any(|r| r.status == "running"),
                            );
                        view! { <AwsOverviewView o upkeep /> }.into_any()
                    }
                    Err(e) => {
                        running.set(false);
                        polls_left.set(0);
                        view! { <ErrorBox error=e /> }.into_any()
                    }
                }
            })}
        </Transition>
        <h2>"Account assignments"</h2>
        <p class="lead">"What the provisioner reports as assigned right now."</p>
        {loaded(assignments, move |value| match value {
            rows if rows.is_empty() => {
                view! { <p class="empty">"No assignments."</p> }.into_any()
            }
            rows => {
                view! {
                    <table>
                        <thead>
                            <tr>
                                <th>"Account"</th>
                                <th>"Permission set"</th>
                                <th>"Principal"</th>
                                <th>"Since"</th>
                            </tr>
                        </thead>
                        <tbody>
                            {rows
                                .into_iter()
                                .map(|a| {
                                    let account = a.account_id.clone();
                                    let ps = a.permission_set.clone();
                                    view! {
                                        <tr
                                            data-testid="assignment-row"
                                            data-account=account
                                            data-permission-set=ps
                                        >
                                            <td>
                                                {a.account_name} <span class="muted">" " {a.account_id}</span>
                                            </td>
                                            <td>{a.permission_set}</td>
                                            <td>{a.principal}</td>
                                            <td class="muted">{a.created_at}</td>
                                        </tr>
                                    }
                                })
                                .collect_view()}
                        </tbody>
                    </table>
                }
                    .into_any()
            }
        })}
    }
}

/// The latest run of a catalog sync or reconciliation, and a button to run one now.
#[component]
fn RunStatus(
    runs: Vec<RunView>,
    what: &'static str,
    label: &'static str,
    upkeep: ServerAction<RunUpkeep>,
) -> impl IntoView {
    let latest = runs.into_iter().next();
    view! {
        <div class="run">
            {match latest {
                None => view! { <p class="muted" data-testid=format!("{what}-run")>"Not run yet."</p> }.into_any(),
                Some(r) => {
                    let status = r.status.clone();
                    let text = if r.status == "running" { r.progress } else { r.summary };
                    view! {
                        <p data-testid=format!("{what}-run") data-status=status>
                            <strong>{r.status}</strong>
                            " " {text}
                            <span class="muted">
                                " started " {r.started_at}
                                {(!r.finished_at.is_empty()).then(|| format!(", finished {}", r.finished_at))}
                            </span>
                        </p>
                    }
                        .into_any()
                }
            }}
            <ActionForm action=upkeep>
                <input type="hidden" name="what" value=what />
                <button type="submit" class="secondary" data-testid=format!("{what}-now")>
                    {label}
                </button>
            </ActionForm>
        </div>
    }
}

#[component]
fn AwsOverviewView(o: AwsOverview, upkeep: ServerAction<RunUpkeep>) -> impl IntoView {
    view! {
        <p class="lead">"Provisioner: " <strong>{o.provisioner}</strong></p>
        <h2>"Drift"</h2>
        <RunStatus runs=o.reconcile_runs what="reconcile" label="Reconcile now" upkeep />
        {if o.drift.is_empty() {
            view! { <p class="empty" data-testid="no-drift">"No drift found."</p> }.into_any()
        } else {
            view! { <AlertList alerts=o.drift testid="drift" /> }.into_any()
        }}
        <h2>"Catalog"</h2>
        <RunStatus runs=o.catalog_runs what="catalog" label="Sync catalog now" upkeep />
        <table>
            <thead>
                <tr>
                    <th>"Account"</th>
                    <th>"OU path"</th>
                </tr>
            </thead>
            <tbody>
                {o
                    .accounts
                    .into_iter()
                    .map(|a| {
                        let id = a.account_id.clone();
                        view! {
                            <tr data-testid="catalog-account" data-account=id>
                                <td>{a.name} <span class="muted">" " {a.account_id}</span></td>
                                <td>{a.ou_path}</td>
                            </tr>
                        }
                    })
                    .collect_view()}
            </tbody>
        </table>
        <table>
            <thead>
                <tr>
                    <th>"Permission set"</th>
                    <th>"Session duration"</th>
                    <th>"Description"</th>
                </tr>
            </thead>
            <tbody>
                {o
                    .permission_sets
                    .into_iter()
                    .map(|p| {
                        view! {
                            <tr data-testid="catalog-permission-set" title=p.arn>
                                <td>{p.name}</td>
                                <td>{p.session_duration}</td>
                                <td class="muted">{p.description}</td>
                            </tr>
                        }
                    })
                    .collect_view()}
            </tbody>
        </table>
    }
}

#[component]
fn OutboxPage() -> impl IntoView {
    let data = Resource::new(|| (), |_| mail_outbox());
    view! {
        <Title text="Outbox · Portcullis" />
        <h1>"Mail outbox"</h1>
        <p class="lead">"Every message Portcullis sent or will send, newest first."</p>
        {loaded(data, move |value| match value {
            rows if rows.is_empty() => {
                view! { <p class="empty">"No mail yet."</p> }.into_any()
            }
            rows => {
                view! {
                    <div class="mails">
                        {rows
                            .into_iter()
                            .map(|m| {
                                let to = m.to.clone();
                                view! {
                                    <details data-testid="outbox-row" data-to=to>
                                        <summary>
                                            <strong>{m.subject}</strong>
                                            <span class="muted">
                                                " to " {m.to} " · " {m.created_at} " · " {m.status}
                                            </span>
                                        </summary>
                                        <pre>{m.body_text}</pre>
                                    </details>
                                }
                            })
                            .collect_view()}
                    </div>
                }
                    .into_any()
            }
        })}
    }
}
