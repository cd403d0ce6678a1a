//! Keeping the portal and AWS in step, in the worker's maintenance lane: the catalog
//! (accounts, OUs, permission sets) synced from AWS, and reconciliation of AWS's
//! assignments with the live grants. Both run on a period and on an admin's demand, one
//! job each however many replicas run (see ARCHITECTURE.md, "Reconciliation"). Beside them,
//! in the same lane: verification of the audit chain (`audit_chain`).

pub mod audit_chain;
pub mod catalog;
pub mod directory;
pub mod reconcile;
