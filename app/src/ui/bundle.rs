//! "Several at once" on the Request access page (issue #12, item 10): one form that asks
//! for two or more entitlements with one justification, duration, ticket and start. Each
//! part is decided by its own approvers; the server makes all of them or none.

use super::widgets::{action_error, field_error, outcome_for};
use crate::api::CreateBundle;
use crate::views::EntitlementCard;
use leptos::prelude::*;

#[component]
pub(super) fn BundleForm(cards: Vec<EntitlementCard>) -> impl IntoView {
    let action = ServerAction::<CreateBundle>::new();
    // Only this form's outcome: the request cards' errors name their entitlement.
    let value = outcome_for(action.value(), "bundle".into());
    let ticket = cards
        .iter()
        .find(|c| c.require_ticket || c.ticket_example.is_some())
        .map(|c| c.ticket_example.clone());
    view! {
        <article class="card" data-testid="bundle-form">
            <h2>"Several at once"</h2>
            <p>
                "Ask for two or more entitlements with one justification. Each is decided by its own approvers, as if asked alone; nothing is asked unless every one can be."
            </p>
            <ActionForm action>
                <fieldset class="choices">
                    <legend>"Entitlements"</legend>
                    {cards
                        .into_iter()
                        .map(|c| {
                            let box_id = format!("bundle-{}", c.id);
                            view! {
                                <div class="choice">
                                    <input
                                        type="checkbox"
                                        id=box_id.clone()
                                        name=format!("entitlements[{}]", c.id)
                                        value="on"
                                        data-testid=box_id.clone()
                                    />
                                    <label for=box_id>
                                        {c.name.clone()}
                                        <span class="muted">" · " {c.approval.clone()} " · up to " {c.max_duration.clone()}</span>
                                    </label>
                                </div>
                            }
                        })
                        .collect_view()}
                </fieldset>
                {field_error(value, "entitlements")}
                <label for="bundle-just">"Justification"</label>
                <textarea id="bundle-just" name="justification" rows="2" maxlength="1000"></textarea>
                {field_error(value, "justification")}
                <div class="row">
                    <div>
                        <label for="bundle-dur">"Duration"</label>
                        <input id="bundle-dur" name="duration" type="text" value="1h" placeholder="e.g. 30m, 1h, 1h30m" />
                        {field_error(value, "duration")}
                    </div>
                    <div>
                        <label for="bundle-starts">"Starts (optional)"</label>
                        <input id="bundle-starts" name="starts" type="text" placeholder="now, or 2h, 1d, 2026-12-03 09:00" />
                        {field_error(value, "starts")}
                    </div>
                    {ticket
                        .map(|example| {
                            view! {
                                <div>
                                    <label for="bundle-ticket">"Ticket (where one is needed)"</label>
                                    <input
                                        id="bundle-ticket"
                                        name="ticket"
                                        type="text"
                                        maxlength="64"
                                        placeholder=example.unwrap_or_else(|| "CHG-1234".into())
                                    />
                                    {field_error(value, "ticket")}
                                </div>
                            }
                        })}
                </div>
                {action_error(value)}
                <button type="submit" data-testid="submit-bundle" disabled=move || action.pending().get()>
                    "Request these together"
                </button>
                {move || {
                    value
                        .get()
                        .and_then(|r| r.ok())
                        .map(|ids| {
                            view! {
                                <p class="success" data-testid="bundle-created">
                                    {format!("{} requests sent together. ", ids.len())}
                                    <a href="/requests">"Follow them in My access"</a>
                                </p>
                            }
                        })
                }}
            </ActionForm>
        </article>
    }
}
