//! The audit log page (admins): filter by person, entitlement or action, or export every
//! matching event as CSV or JSON Lines.

use super::admin::{AdminNav, Pager};
use super::when::When;
use super::widgets::loaded;
use crate::api::audit_log;
use crate::views::AuditFilter;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

#[component]
pub(super) fn AuditPage() -> impl IntoView {
    let query = use_query_map();
    let filter = move || {
        let q = query.get();
        let get = |k: &str| q.get(k).filter(|v| !v.trim().is_empty());
        AuditFilter {
            person: get("person"),
            entitlement: get("entitlement"),
            action: get("action"),
            before: get("before").and_then(|b| b.trim().parse().ok()),
        }
    };
    let data = Resource::new(filter, |f| {
        audit_log(f.person, f.entitlement, f.action, f.before)
    });
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
            <a href=move || export_href(&filter(), "csv") class="button secondary" data-testid="audit-export-csv">
                "Export CSV"
            </a>
            <a href=move || export_href(&filter(), "jsonl") class="button secondary" data-testid="audit-export-jsonl">
                "Export JSON Lines"
            </a>
        </form>
        {loaded(data, move |page| {
            if page.events.is_empty() {
                return view! { <p class="empty">"No audit events match."</p> }.into_any();
            }
            let paged = filter().before.is_some();
            let older = page.older.map(|seq| page_href(&filter(), Some(seq)));
            let rows = page.events;
            view! {
                <table class="log">
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
                                        <td data-label="#" class="muted">{a.seq}</td>
                                        <td data-label="When" class="muted"><When utc=a.at /></td>
                                        <td data-label="Who">{a.actor}</td>
                                        <td data-label="Action">{a.action}</td>
                                        <td data-label="Subject" class="muted">{a.subject}</td>
                                        <td data-label="Entitlement">{a.entitlement}</td>
                                        <td data-label="Detail">{a.detail}</td>
                                    </tr>
                                }
                            })
                            .collect_view()}
                    </tbody>
                </table>
                <Pager
                    first=paged.then(|| page_href(&filter(), None))
                    next=older
                    next_label="Older events"
                    testid="audit-pager"
                />
            }
                .into_any()
        })}
    }
}

/// The page's filter as query parameters, blank ones left out.
fn filter_params(f: &AuditFilter) -> Vec<String> {
    [
        ("person", &f.person),
        ("entitlement", &f.entitlement),
        ("action", &f.action),
    ]
    .into_iter()
    .filter_map(|(name, value)| {
        value
            .as_ref()
            .map(|v| format!("{name}={}", crate::url::encode(v)))
    })
    .collect()
}

/// The page of the log for the page's filter that starts before event `before` (the
/// first page without it).
fn page_href(f: &AuditFilter, before: Option<i64>) -> String {
    let mut params = filter_params(f);
    params.extend(before.map(|seq| format!("before={seq}")));
    match params.is_empty() {
        true => "/admin/audit".to_owned(),
        false => format!("/admin/audit?{}", params.join("&")),
    }
}

/// The export of every event matching the page's filter.
fn export_href(f: &AuditFilter, format: &str) -> String {
    let mut params = vec![format!("format={format}")];
    params.extend(filter_params(f));
    format!("/admin/audit.csv?{}", params.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_links_carry_the_filter() {
        let f = AuditFilter {
            person: Some("Ann & co".into()),
            entitlement: None,
            action: Some("request.".into()),
            before: Some(7),
        };
        assert_eq!(
            export_href(&f, "jsonl"),
            "/admin/audit.csv?format=jsonl&person=Ann%20%26%20co&action=request."
        );
        assert_eq!(
            page_href(&f, None),
            "/admin/audit?person=Ann%20%26%20co&action=request."
        );
        assert_eq!(page_href(&AuditFilter::default(), None), "/admin/audit");
        assert_eq!(
            page_href(&AuditFilter::default(), Some(42)),
            "/admin/audit?before=42"
        );
    }
}
