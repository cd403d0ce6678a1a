//! The access explorer (admins, issue #14 item 6): who holds access now and who could
//! ask for it, narrowed by person, account, OU and permission set, with a CSV export of
//! every matching row; and a what-if that reads an entitlement's new definition and says
//! whom it would let ask or decide, before anyone applies it.

use super::admin::AdminNav;
use super::widgets::{action_error, field_error, loaded};
use crate::api::{load_access, what_if};
use crate::views::{AccessFilter, AccessRowView, DefinitionView, WhatIfView};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

#[component]
pub(super) fn AccessPage() -> impl IntoView {
    let query = use_query_map();
    let filter = move || {
        let q = query.get();
        let get = |k: &str| q.get(k).filter(|v| !v.trim().is_empty());
        AccessFilter {
            person: get("person"),
            account: get("account"),
            ou: get("ou"),
            permission_set: get("permission_set"),
        }
    };
    let data = Resource::new(filter, |f| {
        load_access(f.person, f.account, f.ou, f.permission_set)
    });
    view! {
        <Title text="Access · Portcullis" />
        <h1>"Access"</h1>
        <AdminNav />
        <form method="get" action="/admin/access" class="filters" data-testid="access-filters">
            <input name="person" aria-label="Person" placeholder="person (name or email)" value=move || filter().person />
            <input name="account" aria-label="Account" placeholder="account (id or name)" value=move || filter().account />
            <input name="ou" aria-label="OU" placeholder="OU (id or name)" value=move || filter().ou />
            <input
                name="permission_set"
                aria-label="Permission set"
                placeholder="permission set"
                value=move || filter().permission_set
            />
            <button type="submit" data-testid="access-filter">
                "Filter"
            </button>
            <a href=move || export_href(&filter()) class="button secondary" data-testid="access-export">
                "Export CSV"
            </a>
        </form>
        {loaded(data, |x| {
            let definitions = x.definitions.clone();
            view! {
                <h2>"Holding access now"</h2>
                <AccessTable rows=x.holding more=x.holding_more held=true />
                <h2>"Could ask"</h2>
                <p class="muted">
                    "Everyone the portal knows (who has signed in or was imported) whom a live entitlement's policy lets ask, at each account its targets cover today."
                </p>
                <AccessTable rows=x.eligible more=x.eligible_more held=false />
                <WhatIfForm definitions />
            }
        })}
    }
}

#[component]
fn AccessTable(rows: Vec<AccessRowView>, more: usize, held: bool) -> impl IntoView {
    let testid = if held {
        "access-holding"
    } else {
        "access-eligible"
    };
    if rows.is_empty() {
        let empty = if held {
            "Nobody holds matching access."
        } else {
            "Nobody could ask for matching access."
        };
        return view! { <p class="empty" data-testid=format!("{testid}-empty")>{empty}</p> }
            .into_any();
    }
    let last = if held { "Ends" } else { "Decided by" };
    view! {
        <table class="log" data-testid=testid>
            <thead>
                <tr>
                    <th>"Person"</th>
                    <th>"Account"</th>
                    <th>"Permission set"</th>
                    <th>"Entitlement"</th>
                    {held.then(|| view! { <th>"Status"</th> })}
                    <th>{last}</th>
                </tr>
            </thead>
            <tbody>
                {rows
                    .into_iter()
                    .map(|r| {
                        let email = r.email.clone();
                        let link = r.request_id.clone().map(|id| format!("/requests/{id}"));
                        let entitlement = r.entitlement.clone();
                        view! {
                            <tr data-testid="access-row" data-email=email>
                                <td data-label="Person">
                                    {r.person} <span class="muted">" " {r.email}</span>
                                </td>
                                <td data-label="Account">
                                    {r.account} <span class="muted">" " {r.ou_path}</span>
                                </td>
                                <td data-label="Permission set">{r.permission_set}</td>
                                <td data-label="Entitlement">
                                    {match link {
                                        Some(href) => view! { <a href=href>{entitlement}</a> }.into_any(),
                                        None => view! { <span>{entitlement}</span> }.into_any(),
                                    }}
                                </td>
                                {held.then(|| view! { <td data-label="Status">{r.status.clone()}</td> })}
                                <td data-label=last>{r.detail}</td>
                            </tr>
                        }
                    })
                    .collect_view()}
            </tbody>
        </table>
        {(more > 0)
            .then(|| {
                view! {
                    <p class="muted" data-testid=format!("{testid}-more")>
                        {format!("{more} more match: narrow the filter, or export them all.")}
                    </p>
                }
            })}
    }
    .into_any()
}

/// Paste an entitlement's TOML (as `portcullis entitlements export` writes it), or start
/// from a live one's (`?from=<id>`) and edit it, and see whom it would let ask or decide;
/// nothing is changed. The form is a GET (`?definition=...#what-if`): the page works the
/// answer out as it renders, so it shows without JavaScript too, and can be shared.
#[component]
fn WhatIfForm(definitions: Vec<DefinitionView>) -> impl IntoView {
    let query = use_query_map();
    let asked = move || query.with(|q| q.get("definition").filter(|d| !d.trim().is_empty()));
    let answer = Resource::new(asked, |definition| async move {
        match definition {
            Some(d) => Some(what_if(d).await),
            None => None,
        }
    });
    let links: Vec<(String, String)> = definitions
        .iter()
        .map(|d| {
            (
                format!("/admin/access?from={}#what-if", crate::url::encode(&d.id)),
                d.name.clone(),
            )
        })
        .collect();
    let start = move || {
        asked().unwrap_or_else(|| {
            let from = query.get().get("from").unwrap_or_default();
            definitions
                .iter()
                .find(|d| d.id == from)
                .map(|d| d.toml.clone())
                .unwrap_or_default()
        })
    };
    let outcome = Signal::derive(move || answer.get().flatten());
    let start_value = start.clone();
    view! {
        <article class="card" id="what-if" data-testid="what-if">
            <h2>"What if"</h2>
            <p>
                "Paste one entitlement's definition (TOML, as " <code>"portcullis entitlements export"</code>
                " writes it) to see whom it would let ask or decide, compared with today. Nothing is changed."
            </p>
            <p class="start-from" data-testid="what-if-start-from">
                "Start from: "
                {links
                    .into_iter()
                    .map(|(href, name)| view! { <a href=href>{name}</a> " " })
                    .collect_view()}
            </p>
            <form method="get" action="/admin/access#what-if">
                <label for="what-if-definition">"Definition"</label>
                // The text for the page as served; the property for each address the
                // page moves to afterwards (a textarea someone typed in no longer follows
                // its text).
                <textarea
                    id="what-if-definition"
                    name="definition"
                    rows="14"
                    spellcheck="false"
                    prop:value=start_value
                >
                    {start}
                </textarea>
                <Transition fallback=|| ()>
                    {field_error(outcome, "definition")}
                    {action_error(outcome)}
                </Transition>
                <button type="submit" data-testid="what-if-run">
                    "Compare"
                </button>
            </form>
            <Transition fallback=|| view! { <p>"Comparing…"</p> }>
                {move || outcome.get().and_then(|r| r.ok()).map(|w| view! { <WhatIfResult w /> })}
            </Transition>
        </article>
    }
}

#[component]
fn WhatIfResult(w: WhatIfView) -> impl IntoView {
    let heading = if w.new {
        format!("{} is new", w.entitlement)
    } else {
        format!("Changing {}", w.entitlement)
    };
    let nothing = w.eligible_gain.is_empty()
        && w.eligible_lose.is_empty()
        && w.approvers_gain.is_empty()
        && w.approvers_lose.is_empty()
        && w.notes.is_empty();
    view! {
        <section data-testid="what-if-result">
            <h3>{heading}</h3>
            {nothing.then(|| view! { <p data-testid="what-if-same">"Nobody's access would change."</p> })}
            <Names title="Could ask, and cannot today" names=w.eligible_gain testid="what-if-eligible-gain" />
            <Names title="Could no longer ask" names=w.eligible_lose testid="what-if-eligible-lose" />
            <Names title="Could decide, and cannot today" names=w.approvers_gain testid="what-if-approvers-gain" />
            <Names title="Could no longer decide" names=w.approvers_lose testid="what-if-approvers-lose" />
            {(!w.notes.is_empty())
                .then(|| {
                    view! {
                        <ul data-testid="what-if-notes">
                            {w.notes.into_iter().map(|n| view! { <li>{n}</li> }).collect_view()}
                        </ul>
                    }
                })}
        </section>
    }
}

#[component]
fn Names(title: &'static str, names: Vec<String>, testid: &'static str) -> impl IntoView {
    (!names.is_empty()).then(|| {
        view! {
            <h4>{title} " (" {names.len()} ")"</h4>
            <ul data-testid=testid>{names.into_iter().map(|n| view! { <li>{n}</li> }).collect_view()}</ul>
        }
    })
}

/// The export of every row matching the page's filter.
fn export_href(f: &AccessFilter) -> String {
    let mut parts = Vec::new();
    for (name, value) in [
        ("person", &f.person),
        ("account", &f.account),
        ("ou", &f.ou),
        ("permission_set", &f.permission_set),
    ] {
        if let Some(v) = value {
            parts.push(format!("{name}={}", crate::url::encode(v)));
        }
    }
    if parts.is_empty() {
        "/admin/access.csv".into()
    } else {
        format!("/admin/access.csv?{}", parts.join("&"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_export_link_carries_the_filter() {
        assert_eq!(export_href(&AccessFilter::default()), "/admin/access.csv");
        let f = AccessFilter {
            person: Some("Ann & co".into()),
            ou: Some("Workloads".into()),
            ..AccessFilter::default()
        };
        assert_eq!(
            export_href(&f),
            "/admin/access.csv?person=Ann%20%26%20co&ou=Workloads"
        );
    }
}
