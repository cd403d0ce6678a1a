//! The audit log page (admins): filter by person, entitlement or action, or export every
//! matching event as CSV or JSON Lines.

use super::admin::AdminNav;
use super::when::When;
use super::widgets::loaded_list;
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
            <a href=move || export_href(&filter(), "csv") class="button secondary" data-testid="audit-export-csv">
                "Export CSV"
            </a>
            <a href=move || export_href(&filter(), "jsonl") class="button secondary" data-testid="audit-export-jsonl">
                "Export JSON Lines"
            </a>
        </form>
        {loaded_list(data, "No audit events match.", move |rows| {
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
            }
        })}
    }
}

/// The export of every event matching the page's filter.
fn export_href(f: &AuditFilter, format: &str) -> String {
    let mut href = format!("/admin/audit.csv?format={format}");
    for (name, value) in [
        ("person", &f.person),
        ("entitlement", &f.entitlement),
        ("action", &f.action),
    ] {
        if let Some(v) = value {
            href.push_str(&format!("&{name}={}", crate::url::encode(v)));
        }
    }
    href
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
        };
        assert_eq!(
            export_href(&f, "jsonl"),
            "/admin/audit.csv?format=jsonl&person=Ann%20%26%20co&action=request."
        );
    }
}
