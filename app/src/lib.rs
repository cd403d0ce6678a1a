#![recursion_limit = "256"]
//! Portcullis' web app: pages, server functions, the view models they exchange, and the pure
//! domain.
//! Compiled with `ssr` into the server and with `hydrate` into WebAssembly.

pub mod api;
pub mod domain;
pub mod error;
pub mod ui;
pub mod url;
pub mod views;

#[cfg(feature = "ssr")]
pub mod ssr;

pub use ui::{shell, App};

#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(App);
}
