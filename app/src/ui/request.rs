//! The "Request access" page: one card per entitlement the caller is eligible for, each with
//! its request form.

use super::bundle::BundleForm;
use super::widgets::{action_error, field_error, loaded_list, outcome_for};
use crate::api::{list_entitlements, CreateRequest};
use crate::views::EntitlementCard;
use leptos::prelude::*;
use leptos_meta::Title;

#[component]
pub(super) fn RequestPage() -> impl IntoView {
    let entitlements = Resource::new(|| (), |_| list_entitlements());
    view! {
        <Title text="Request access · Portcullis" />
        <h1>"Request access"</h1>
        <p class="lead">
            "Entitlements your groups make you eligible for. Access starts when approved and ends by itself."
        </p>
        {loaded_list(entitlements, "You are not eligible for any entitlement yet.", move |list| {
            // Several at once: what may go in a bundle (break-glass is asked for alone).
            let bundled: Vec<EntitlementCard> = list.iter().filter(|c| !c.break_glass).cloned().collect();
            view! {
                <div class="cards">
                    {list
                        .into_iter()
                        .map(|card| view! { <EntitlementForm card /> })
                        .collect_view()}
                    {(bundled.len() >= 2).then(|| view! { <BundleForm cards=bundled /> })}
                </div>
            }
        })}
    }
}

#[component]
fn EntitlementForm(card: EntitlementCard) -> impl IntoView {
    let action = ServerAction::<CreateRequest>::new();
    let id = card.id.clone();
    let own = card.id.clone();
    // Only this card's outcome: errors name the entitlement they are about.
    let value = outcome_for(action.value(), own);
    let testid = format!("entitlement-{}", card.id);
    let textarea_id = format!("just-{}", card.id);
    let duration_id = format!("dur-{}", card.id);
    let ticket_id = format!("ticket-{}", card.id);
    let starts_id = format!("starts-{}", card.id);
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
                    <div>
                        <label for=starts_id.clone()>"Starts (optional)"</label>
                        <input
                            id=starts_id.clone()
                            name="starts"
                            type="text"
                            placeholder="now, or 2h, 1d, 2026-12-03 09:00"
                            aria-describedby=format!("{starts_id}-hint")
                        />
                        <p class="muted hint" id=format!("{starts_id}-hint")>
                            "Empty starts as soon as it is approved. Times are UTC."
                        </p>
                        {field_error(value, "starts")}
                    </div>
                    {(card.require_ticket || card.ticket_example.is_some())
                        .then(|| {
                            let example = card.ticket_example.clone();
                            let hint_id = format!("{ticket_id}-hint");
                            view! {
                                <div>
                                    <label for=ticket_id.clone()>
                                        {if card.require_ticket { "Ticket" } else { "Ticket (optional)" }}
                                    </label>
                                    <input
                                        id=ticket_id.clone()
                                        name="ticket"
                                        type="text"
                                        maxlength="64"
                                        placeholder=example.clone().unwrap_or_else(|| "CHG-1234".into())
                                        aria-describedby=example.as_ref().map(|_| hint_id.clone())
                                    />
                                    {example
                                        .map(|e| {
                                            view! {
                                                <p class="muted hint" id=hint_id data-testid="ticket-format">
                                                    "Format: like " <code>{e}</code>
                                                </p>
                                            }
                                        })}
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
