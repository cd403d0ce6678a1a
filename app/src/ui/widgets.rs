//! Pieces several pages share: how a loading resource, an error or an action's outcome shows,
//! the one-button action form, and the alert list.

use crate::error::AppError;
use crate::views::{AlertView, TargetView};
use leptos::prelude::*;
use leptos::server_fn::{client::Client, codec::PostUrl, request::ClientReq, Http, ServerFn};
use leptos::web_sys::FormData;
use serde::de::DeserializeOwned;

#[component]
pub(super) fn ErrorBox(error: AppError) -> impl IntoView {
    let forbidden = matches!(error, AppError::Forbidden(_));
    // A sign-in that is too old for this action: a fresh one, back to this page.
    let reauth = (error == AppError::ReauthRequired).then(|| {
        let here = leptos_router::hooks::use_location()
            .pathname
            .get_untracked();
        let href = format!("/auth/reauth?return_to={}", crate::url::encode(&here));
        view! {
            " "
            <a href=href data-testid="reauth">
                "Sign in again"
            </a>
        }
    });
    view! {
        <p class="error" role="alert" data-testid=if forbidden { "forbidden" } else { "error" }>
            {error.to_string()}
            {reauth}
        </p>
    }
}

/// A resource on the page: "Loading…", then `render(value)`, or the error. Fetching again
/// (after an action, or live) keeps showing the last value until the new one is there.
pub(super) fn loaded<T, V>(
    data: Resource<Result<T, AppError>>,
    render: impl Fn(T) -> V + Clone + Send + Sync + 'static,
) -> impl IntoView
where
    T: Clone + Send + Sync + serde::Serialize + serde::de::DeserializeOwned + 'static,
    V: IntoView + 'static,
{
    view! {
        <Transition fallback=|| view! { <p>"Loading…"</p> }>
            {move || {
                let render = render.clone();
                Suspend::new(async move {
                    match data.await {
                        Ok(value) => render(value).into_any(),
                        Err(e) => view! { <ErrorBox error=e /> }.into_any(),
                    }
                })
            }}
        </Transition>
    }
}

/// A list on the page: like [`loaded`], but an empty list shows as the `empty` note.
pub(super) fn loaded_list<T, V>(
    data: Resource<Result<Vec<T>, AppError>>,
    empty: &'static str,
    render: impl Fn(Vec<T>) -> V + Clone + Send + Sync + 'static,
) -> impl IntoView
where
    T: Clone + Send + Sync + serde::Serialize + serde::de::DeserializeOwned + 'static,
    V: IntoView + 'static,
{
    loaded(data, move |rows: Vec<T>| {
        if rows.is_empty() {
            view! { <p class="empty">{empty}</p> }.into_any()
        } else {
            render(rows).into_any()
        }
    })
}

/// Shows an action's outcome: a general error, or nothing (field errors sit by their fields).
pub(super) fn action_error<T, S>(value: S) -> impl IntoView
where
    T: Clone + Send + Sync + 'static,
    S: Get<Value = Option<Result<T, AppError>>> + Clone + Send + Sync + 'static,
{
    move || match value.get() {
        Some(Err(AppError::Invalid(_))) | None | Some(Ok(_)) => None,
        Some(Err(e)) => Some(view! { <ErrorBox error=e /> }),
    }
}

/// An action's outcome as one of several forms on a page sees it: field errors only when
/// they are about `own` (the error's `for` field names the form), everything else as is.
/// Without JavaScript every form reads the same error back from the URL.
pub(super) fn outcome_for<T, S>(value: S, own: String) -> Signal<Option<Result<T, AppError>>>
where
    T: Clone + Send + Sync + 'static,
    S: Get<Value = Option<Result<T, AppError>>> + Send + Sync + 'static,
{
    Signal::derive(move || {
        value.get().filter(|r| match r {
            Err(AppError::Invalid(fields)) => fields
                .iter()
                .find(|f| f.field == "for")
                .is_none_or(|f| f.message == own),
            _ => true,
        })
    })
}

/// Approve or reject, with a comment: the form on Approvals and on a request's page.
#[component]
pub(super) fn DecisionForm(
    request_id: String,
    /// The comment box's element id (unique on the page).
    comment_id: String,
    decide: ServerAction<crate::api::Decide>,
) -> impl IntoView {
    view! {
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
    }
}

pub(super) fn field_error<T, S>(value: S, field: &'static str) -> impl IntoView
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

/// Open alerts, newest first, each with its kind.
#[component]
pub(super) fn AlertList(alerts: Vec<AlertView>, testid: &'static str) -> impl IntoView {
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

/// An `ActionForm` with one hidden value and one submit button, e.g. Cancel (a request),
/// End now and Revoke (a grant), Resend (a parked mail), Reconcile / Sync catalog now:
/// `<input type="hidden" name value>` then `<button type="submit" class data-testid>label</button>`.
#[component]
pub(super) fn ActionButton<ServFn, OutputProtocol>(
    action: ServerAction<ServFn>,
    /// The server function's argument the value is posted as, e.g. `grant_id`.
    name: &'static str,
    #[prop(into)] value: String,
    /// The button's class, e.g. `secondary` or `danger`.
    class: &'static str,
    #[prop(into)] testid: String,
    label: &'static str,
) -> impl IntoView
where
    // What `ActionForm` asks of its server function.
    ServFn: DeserializeOwned
        + ServerFn<Protocol = Http<PostUrl, OutputProtocol>>
        + Clone
        + Send
        + Sync
        + 'static,
    <<ServFn::Client as Client<ServFn::Error>>::Request as ClientReq<ServFn::Error>>::FormData:
        From<FormData>,
    ServFn::Output: Send + Sync + 'static,
    ServFn::Error: Send + Sync + 'static,
    ServFn::Client: Client<ServFn::Error>,
{
    view! {
        <ActionForm action>
            <input type="hidden" name=name value=value />
            <button type="submit" class=class data-testid=testid>
                {label}
            </button>
        </ActionForm>
    }
}

/// Each target approving grants (or granted): the permission set on its account or OU,
/// how long its sessions last, and how long one can outlast the grant. Also on a
/// request's page.
#[component]
pub(super) fn TargetItems(
    targets: Vec<TargetView>,
    item: &'static str,
    tail: &'static str,
) -> impl IntoView {
    targets
        .into_iter()
        .map(|t| {
            view! {
                <li data-testid=item>
                    <strong>{t.permission_set}</strong> " on " {t.scope}
                    {(!t.session_duration.is_empty()).then(|| view! {
                        <span class="muted">" (sessions last up to " {t.session_duration} ")"</span>
                    })}
                    {t.tail.map(|words| view! {
                        <br /><span class="muted" data-testid=tail>"After the end: " {words}</span>
                    })}
                </li>
            }
        })
        .collect_view()
}
