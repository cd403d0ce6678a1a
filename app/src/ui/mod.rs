//! Pages and components. Every form is an `ActionForm`, so it also works without
//! WebAssembly: the browser posts it, the server redirects back, errors come back in the URL.
//!
//! This module holds the document [`shell`] and the [`App`] with its routes; each page lives in
//! its own file, the header in [`header`], and what several pages share in [`widgets`].

mod access;
mod admin;
mod approvals;
mod audit;
mod aws;
mod bundle;
mod dashboard;
mod entitlements;
mod header;
mod live;
mod my_access;
mod outbox;
mod request;
mod request_detail;
mod when;
mod widgets;

use crate::api::whoami;
use access::AccessPage;
use admin::AdminPage;
use approvals::ApprovalsPage;
use audit::AuditPage;
use aws::AwsPage;
use entitlements::EntitlementsPage;
use header::Header;
use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Title};
use leptos_router::{
    components::{Route, Router, Routes},
    path, SsrMode,
};
use my_access::MyAccessPage;
use outbox::OutboxPage;
use request::RequestPage;
use request_detail::RequestDetailPage;

pub fn shell(options: LeptosOptions) -> impl IntoView {
    // The stylesheet of this build, by its hashed name (the server names the bundle).
    let stylesheet = format!("/{}/{}.css", options.site_pkg_dir, options.output_name);
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
                <link rel="stylesheet" id="leptos" href=stylesheet />
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

/// An address no page answers: says so, and the server's answer is a 404 (not a page
/// that looks found to a crawler, a monitor or a scraper pointed at the wrong port).
#[component]
fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(res) = use_context::<leptos_axum::ResponseOptions>() {
        res.set_status(http::StatusCode::NOT_FOUND);
    }
    view! { <p class="empty">"This page does not exist."</p> }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    let me = Resource::new(|| (), |_| whoami());
    view! {
        <Title text="Portcullis" />
        <Router>
            <Header me />
            <main>
                <Routes fallback=|| view! { <NotFound /> }>
                    <Route path=path!("/") view=RequestPage ssr=SsrMode::Async />
                    <Route path=path!("/requests") view=MyAccessPage ssr=SsrMode::Async />
                    <Route path=path!("/requests/:id") view=RequestDetailPage ssr=SsrMode::Async />
                    <Route path=path!("/approvals") view=ApprovalsPage ssr=SsrMode::Async />
                    <Route path=path!("/admin") view=AdminPage ssr=SsrMode::Async />
                    <Route path=path!("/admin/audit") view=AuditPage ssr=SsrMode::Async />
                    <Route path=path!("/admin/aws") view=AwsPage ssr=SsrMode::Async />
                    <Route path=path!("/admin/entitlements") view=EntitlementsPage ssr=SsrMode::Async />
                    <Route path=path!("/admin/access") view=AccessPage ssr=SsrMode::Async />
                    <Route path=path!("/outbox") view=OutboxPage ssr=SsrMode::Async />
                </Routes>
            </main>
        </Router>
    }
}
