//! Entitlements written back as the configuration file's TOML (`[[entitlements]]`): what
//! `portcullis entitlements export` prints, and what each kept version of an entitlement
//! holds (`store::record_entitlement_version`). Reading the output back as configuration
//! gives the same entitlements (tested).

use anyhow::{Context, Result};
use app::domain::Entitlement;
use serde::Serialize;

#[derive(Serialize)]
struct File<'a> {
    entitlements: &'a [Entitlement],
}

/// `[[entitlements]]` tables, in the given order.
pub fn entitlements_toml(entitlements: &[Entitlement]) -> Result<String> {
    toml::to_string(&File { entitlements }).context("writing entitlements as TOML")
}

/// One entitlement as a `[[entitlements]]` table.
pub fn entitlement_toml(e: &Entitlement) -> Result<String> {
    entitlements_toml(std::slice::from_ref(e))
}
