//! The mail outbox (demo mode and admins): every message Portcullis sent or will send.

use super::when::When;
use super::widgets::loaded_list;
use crate::api::mail_outbox;
use leptos::prelude::*;
use leptos_meta::Title;

#[component]
pub(super) fn OutboxPage() -> impl IntoView {
    let data = Resource::new(|| (), |_| mail_outbox());
    view! {
        <Title text="Outbox · Portcullis" />
        <h1>"Mail outbox"</h1>
        <p class="lead">"Every message Portcullis sent or will send, newest first."</p>
        {loaded_list(data, "No mail yet.", move |rows| {
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
                                            " to " {m.to} " · " <When utc=m.created_at /> " · " {m.status}
                                        </span>
                                    </summary>
                                    <pre>{m.body_text}</pre>
                                </details>
                            }
                        })
                        .collect_view()}
                </div>
            }
        })}
    }
}
