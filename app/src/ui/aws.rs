//! The AWS page (admins): the synced catalog, the latest catalog syncs and reconciliations with
//! buttons to run one now, open drift, and the account assignments the provisioner reports.

use super::admin::AdminNav;
use super::when::When;
use super::widgets::{action_error, loaded_list, ActionButton, AlertList, ErrorBox};
use crate::api::{aws_assignments, load_aws_overview, RunUpkeep};
use crate::views::{AwsOverview, RunView};
use leptos::prelude::*;
use leptos_meta::Title;

#[component]
pub(super) fn AwsPage() -> impl IntoView {
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
        {loaded_list(assignments, "No assignments.", move |rows| {
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
                                        <td data-label="Account">
                                            {a.account_name} <span class="muted">" " {a.account_id}</span>
                                        </td>
                                        <td data-label="Permission set">{a.permission_set}</td>
                                        <td data-label="Principal">{a.principal}</td>
                                        <td data-label="Since" class="muted"><When utc=a.created_at /></td>
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
            <ActionButton
                action=upkeep
                name="what"
                value=what
                class="secondary"
                testid=format!("{what}-now")
                label
            />
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
                                <td data-label="Account">{a.name} <span class="muted">" " {a.account_id}</span></td>
                                <td data-label="OU path">{a.ou_path}</td>
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
                                <td data-label="Permission set">{p.name}</td>
                                <td data-label="Session duration">{p.session_duration}</td>
                                <td data-label="Description" class="muted">{p.description}</td>
                            </tr>
                        }
                    })
                    .collect_view()}
            </tbody>
        </table>
    }
}
