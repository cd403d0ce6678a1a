//! Live status without reloading: a page that shows things in motion (a request waiting, a
//! grant being set up or taken down) fetches its data again every few seconds while the
//! reader can see it. Without WebAssembly the page is the plain page it always was.
//!
//! A refetch re-renders the page's rows, so it waits while the reader is busy there: while
//! the focus is in a form field, while a `<details>` (an Extend form) is open in the page,
//! and from the first keystroke in a form until that form is sent (a comment half typed is
//! never thrown away).

use leptos::prelude::*;

/// How often a visible page looks again.
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
pub const LIVE_EVERY: std::time::Duration = std::time::Duration::from_secs(4);

/// A counter that goes up every [`LIVE_EVERY`] while the page is visible and the reader is
/// not busy in it: put it in a `Resource`'s source to fetch again. Always 0 on the server.
pub(super) fn live_ticks() -> ReadSignal<u32> {
    let (ticks, set_ticks) = signal(0u32);
    #[cfg(feature = "hydrate")]
    Effect::new(move |_| {
        use leptos::ev;
        let (typing, set_typing) = signal(false);
        let typed = window_event_listener(ev::input, move |_| set_typing.set(true));
        let sent = window_event_listener(ev::submit, move |_| set_typing.set(false));
        let handle = set_interval_with_handle(
            move || {
                if !typing.get_untracked() && reader_is_idle() {
                    set_ticks.update(|t| *t = t.wrapping_add(1));
                }
            },
            LIVE_EVERY,
        );
        on_cleanup(move || {
            typed.remove();
            sent.remove();
            if let Ok(handle) = handle {
                handle.clear();
            }
        });
    });
    #[cfg(not(feature = "hydrate"))]
    let _ = set_ticks;
    ticks
}

/// The page is visible, the focus is not in a form field and no `<details>` is open.
#[cfg(feature = "hydrate")]
fn reader_is_idle() -> bool {
    let doc = document();
    if doc.hidden() {
        return false;
    }
    let editing = doc.active_element().is_some_and(|el| {
        matches!(
            el.tag_name().to_ascii_uppercase().as_str(),
            "INPUT" | "TEXTAREA" | "SELECT"
        )
    });
    let open = doc
        .query_selector("main details[open]")
        .ok()
        .flatten()
        .is_some();
    !editing && !open
}
