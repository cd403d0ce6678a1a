//! The pure domain: no I/O, compiles for the server and for WebAssembly.
//!
//! Everything that reaches the store or a provisioner has been parsed into one of
//! these types first; the state machines and policy checks decide, the server carries out.

pub mod approvers;
pub mod entitlement;
pub mod lifecycle;
pub mod policy;
#[cfg(feature = "ssr")]
mod sql;
pub mod steps;
pub mod ticket;
pub mod time;
pub mod types;

pub use approvers::ApprovalStep;
pub use entitlement::{Entitlement, InvalidEntitlement};
pub use lifecycle::{
    GrantEvent, GrantStatus, RequestEvent, RequestStatus, TransitionError, Verdict,
};
pub use policy::{ApproverRule, Denied, Policy, Principal, RequestDraft, ValidRequest};
pub use steps::Progress;
pub use time::Timestamp;
pub use types::*;
