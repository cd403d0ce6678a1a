//! The header on every page: the brand, the navigation the caller may use, who is signed in
//! and the sign-out button.

use crate::error::AppError;
use crate::views::Me;
use leptos::prelude::*;
use leptos_router::components::A;

#[component]
pub(super) fn Header(me: Resource<Result<Option<Me>, AppError>>) -> impl IntoView {
    view! {
        <header class="top">
            <a class="brand" href="/">
                "Portcullis"
            </a>
            <Suspense>
                {move || Suspend::new(async move {
                    match me.await {
                        Ok(Some(me)) => {
                            view! {
                                <nav aria-label="Main">
                                    <A href="/" attr:data-testid="nav-request">
                                        "Request access"
                                    </A>
                                    <A href="/requests" attr:data-testid="nav-my">
                                        "My access"
                                    </A>
                                    <A href="/approvals" attr:data-testid="nav-approvals">
                                        "Approvals"
                                    </A>
                                    <Show when=move || me.is_admin>
                                        <A href="/admin" attr:data-testid="nav-admin">
                                            "Admin"
                                        </A>
                                    </Show>
                                    <Show when=move || me.demo || me.is_admin>
                                        <A href="/outbox" attr:data-testid="nav-outbox">
                                            "Outbox"
                                        </A>
                                    </Show>
                                </nav>
                                <div class="who">
                                    <span data-testid="whoami">{me.display_name.clone()}</span>
                                    {me.demo.then(|| view! { <span class="badge">"demo"</span> })}
                                    <form method="post" action="/auth/logout">
                                        <button type="submit" class="link" data-testid="sign-out">
                                            "Sign out"
                                        </button>
                                    </form>
                                    <form method="post" action="/auth/logout-everywhere">
                                        <button
                                            type="submit"
                                            class="link"
                                            data-testid="sign-out-everywhere"
                                            title="End my sessions in every browser"
                                        >
                                            "End all my sessions"
                                        </button>
                                    </form>
                                </div>
                            }
                                .into_any()
                        }
                        _ => view! { <span></span> }.into_any(),
                    }
                })}
            </Suspense>
        </header>
    }
}
