//! The admin page for entitlements (`/admin/entitlements`): for each one, what it grants,
//! who may ask, who decides, its limits, its live grants and newest requests, and every
//! version of it with what changed.

use super::admin::AdminNav;
use super::when::When;
use super::widgets::loaded_list;
use crate::api::load_admin_entitlements;
use crate::views::{EntitlementDetailView, EntitlementVersionView};
use leptos::prelude::*;
use leptos_meta::Title;

#[component]
pub(super) fn EntitlementsPage() -> impl IntoView {
    let data = Resource::new(|| (), |_| load_admin_entitlements());
    view! {
        <Title text="Entitlements · Admin · Portcullis" />
        <h1>"Entitlements"</h1>
        <AdminNav />
        <p class="lead">
            "Each entitlement as the configuration declares it: what it grants, who may ask and who decides, and every change to it."
        </p>
        {loaded_list(data, "No entitlements are configured.", |all| {
            all.into_iter().map(|e| view! { <EntitlementSection e /> }).collect_view()
        })}
    }
}

#[component]
fn EntitlementSection(e: EntitlementDetailView) -> impl IntoView {
    let status = if e.retired_at.is_some() {
        "retired"
    } else {
        "live"
    };
    let heading = format!("entitlement-{}", e.id);
    let labelled_by = heading.clone();
    let (anchor, testid_id) = (e.id.clone(), e.id.clone());
    view! {
        <section
            class="card entitlement"
            id=anchor
            aria-labelledby=labelled_by
            data-testid="entitlement-detail"
            data-entitlement=testid_id
            data-status=status
        >
            <h2 id=heading>
                {e.name}
                {match e.retired_at {
                    Some(at) => view! {
                        <span class="badge warn">"retired"</span>
                        <span class="muted">" since " <When utc=at /></span>
                    }.into_any(),
                    None => view! { <span class="badge ok">"live"</span> }.into_any(),
                }}
            </h2>
            <p class="muted">{e.description}</p>
            <dl class="facts">
                <dt>"Id"</dt>
                <dd><code>{e.id}</code></dd>
                <dt>"Grants"</dt>
                <dd>
                    <ul class="targets">
                        {e.targets.into_iter().map(|t| view! {
                            <li data-testid="entitlement-target">
                                {t.permission_set} " on " {t.scope}
                                {(!t.session_duration.is_empty()).then(|| view! {
                                    <span class="muted">" (sessions last up to " {t.session_duration} ")"</span>
                                })}
                            </li>
                        }).collect_view()}
                    </ul>
                </dd>
                <dt>"Who may ask"</dt>
                <dd data-testid="eligible">{e.eligible}</dd>
                <dt>"Who decides"</dt>
                <dd data-testid="approval">{e.approval}</dd>
                <dt>"Limits"</dt>
                <dd>
                    <ul class="targets">
                        {e.limits.into_iter().map(|l| view! { <li>{l}</li> }).collect_view()}
                    </ul>
                </dd>
                <dt>"Live grants"</dt>
                <dd data-testid="live-grants">{e.live_grants}</dd>
                <dt>"Newest requests"</dt>
                <dd>
                    {if e.recent.is_empty() {
                        view! { <span class="empty">"None yet."</span> }.into_any()
                    } else {
                        view! {
                            <ul class="targets">
                                {e.recent.into_iter().map(|r| view! {
                                    <li data-testid="entitlement-request">
                                        <a href=format!("/requests/{}", r.id)>{r.requester}</a>
                                        " · "
                                        <span class=format!("status {}", r.status)>{r.status.clone()}</span>
                                        " · "
                                        <When utc=r.created_at />
                                    </li>
                                }).collect_view()}
                            </ul>
                        }.into_any()
                    }}
                </dd>
            </dl>
            <Versions versions=e.versions />
        </section>
    }
}

#[component]
fn Versions(versions: Vec<EntitlementVersionView>) -> impl IntoView {
    let count = versions.len();
    view! {
        <details class="versions" data-testid="versions">
            <summary>
                {match count {
                    1 => "1 version".to_owned(),
                    n => format!("{n} versions"),
                }}
            </summary>
            <ol reversed>
                {versions.into_iter().map(|v| {
                    let change = v.change.clone();
                    view! {
                    <li data-testid="version" data-version=v.version data-change=change>
                        <p>
                            <strong>"Version " {v.version}</strong>
                            " · " {v.change} " by " {v.by} " · " <When utc=v.at />
                        </p>
                        <pre class="diff" data-testid="diff">
                            {v.diff.into_iter().map(|l| {
                                let mark = match l.kind.as_str() {
                                    "added" => "+ ",
                                    "removed" => "- ",
                                    _ => "  ",
                                };
                                view! { <span class=l.kind>{mark}{l.text}"\n"</span> }
                            }).collect_view()}
                        </pre>
                    </li>
                    }
                }).collect_view()}
            </ol>
        </details>
    }
}
