//! The request and grant state machines, as pure functions.
//!
//! Every status change anywhere in Portcullis goes through [`RequestStatus::apply`] or
//! [`GrantStatus::apply`]; the store writes the result. Tests below cover every
//! (state, event) pair, so a new state or event cannot slip in unconsidered.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    Pending,
    Approved,
    Active,
    Ended,
    Rejected,
    Cancelled,
    TimedOut,
    /// Every grant failed to provision: the request never became active.
    Failed,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestEvent {
    /// An approval was recorded; `complete` when the policy's approvals are now satisfied.
    Approval {
        complete: bool,
    },
    Rejection,
    Cancel,
    /// Nobody decided before the approval deadline.
    DecisionTimeout,
    /// The first grant became active in AWS.
    GrantActive,
    /// Every grant is over (expired, ended early, revoked).
    AllGrantsEnded,
    /// Every grant failed to provision.
    AllGrantsFailed,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantStatus {
    Scheduled,
    Provisioning,
    Active,
    Deprovisioning,
    Revoked,
    Failed,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantEvent {
    /// The worker asked AWS to create the assignment.
    ProvisionStarted,
    /// AWS reported the creation `SUCCEEDED` (or the assignment already existed for another grant).
    CreationSucceeded,
    /// AWS reported the creation `FAILED`, or the grant was refused at grant time.
    CreationFailed,
    /// The worker asked AWS to delete the assignment.
    DeprovisionStarted,
    /// AWS reported the deletion `SUCCEEDED`, or another live grant still needs the
    /// assignment so nothing had to be deleted.
    DeletionSucceeded,
    /// Ended before it was ever provisioned: nothing exists in AWS.
    Discarded,
    /// Reconciliation found the assignment of an active grant missing from AWS: it is
    /// provisioned again.
    AssignmentMissing,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a {kind} that is {from} cannot take {event}")]
pub struct TransitionError {
    pub kind: &'static str,
    pub from: String,
    pub event: String,
}

impl RequestStatus {
    pub const ALL: [RequestStatus; 8] = [
        Self::Pending,
        Self::Approved,
        Self::Active,
        Self::Ended,
        Self::Rejected,
        Self::Cancelled,
        Self::TimedOut,
        Self::Failed,
    ];

    pub fn apply(self, event: RequestEvent) -> Result<RequestStatus, TransitionError> {
        use RequestEvent as E;
        use RequestStatus as S;
        let next = match (self, event) {
            (S::Pending, E::Approval { complete: true }) => S::Approved,
            (S::Pending, E::Approval { complete: false }) => S::Pending,
            (S::Pending, E::Rejection) => S::Rejected,
            (S::Pending, E::Cancel) => S::Cancelled,
            (S::Pending, E::DecisionTimeout) => S::TimedOut,
            // Approved but not yet started: the requester may still withdraw.
            (S::Approved, E::Cancel) => S::Cancelled,
            (S::Approved, E::GrantActive) => S::Active,
            (S::Approved, E::AllGrantsFailed) => S::Failed,
            // Ended before anything became active (ended early during provisioning).
            (S::Approved, E::AllGrantsEnded) => S::Ended,
            (S::Active, E::GrantActive) => S::Active,
            (S::Active, E::AllGrantsEnded) => S::Ended,
            (from, event) => {
                return Err(TransitionError {
                    kind: "request",
                    from: from.to_string(),
                    event: format!("{event:?}"),
                })
            }
        };
        Ok(next)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Active => "active",
            Self::Ended => "ended",
            Self::Rejected => "rejected",
            Self::Cancelled => "cancelled",
            Self::TimedOut => "timed_out",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    pub fn is_open(self) -> bool {
        matches!(self, Self::Pending | Self::Approved | Self::Active)
    }
}

impl GrantStatus {
    pub const ALL: [GrantStatus; 6] = [
        Self::Scheduled,
        Self::Provisioning,
        Self::Active,
        Self::Deprovisioning,
        Self::Revoked,
        Self::Failed,
    ];

    pub fn apply(self, event: GrantEvent) -> Result<GrantStatus, TransitionError> {
        use GrantEvent as E;
        use GrantStatus as S;
        let next = match (self, event) {
            (S::Scheduled, E::ProvisionStarted) => S::Provisioning,
            // The assignment already exists for another live grant: nothing to create.
            (S::Scheduled, E::CreationSucceeded) => S::Active,
            (S::Scheduled, E::CreationFailed) => S::Failed,
            (S::Scheduled, E::Discarded) => S::Revoked,
            (S::Provisioning, E::CreationSucceeded) => S::Active,
            (S::Provisioning, E::CreationFailed) => S::Failed,
            (S::Active, E::DeprovisionStarted) => S::Deprovisioning,
            // Its time ran out while an earlier attempt may have asked AWS for the
            // creation and lost the reply: whatever it made is deleted.
            (S::Provisioning, E::DeprovisionStarted) => S::Deprovisioning,
            (S::Active, E::AssignmentMissing) => S::Scheduled,
            // Another live grant covers the same assignment: it stays, this grant ends.
            (S::Active, E::DeletionSucceeded) => S::Revoked,
            (S::Deprovisioning, E::DeletionSucceeded) => S::Revoked,
            (from, event) => {
                return Err(TransitionError {
                    kind: "grant",
                    from: from.to_string(),
                    event: format!("{event:?}"),
                })
            }
        };
        Ok(next)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Provisioning => "provisioning",
            Self::Active => "active",
            Self::Deprovisioning => "deprovisioning",
            Self::Revoked => "revoked",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Live grants may hold (or are about to hold) the AWS assignment.
    pub fn is_live(self) -> bool {
        matches!(
            self,
            Self::Scheduled | Self::Provisioning | Self::Active | Self::Deprovisioning
        )
    }
}

impl fmt::Display for RequestStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for GrantStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An approver's decision on a request.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Approved,
    Rejected,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approved => "approved",
            Self::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Approved, Self::Rejected]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl RequestEvent {
    /// The event a request's grants call for: `GrantActive` once one grant is active,
    /// `AllGrantsFailed` when every grant failed, `AllGrantsEnded` once every grant is over;
    /// `None` while grants are still on their way (or there are none).
    pub fn from_grants(statuses: &[GrantStatus]) -> Option<RequestEvent> {
        if statuses.contains(&GrantStatus::Active) {
            Some(RequestEvent::GrantActive)
        } else if statuses.is_empty() {
            None
        } else if statuses.iter().all(|s| *s == GrantStatus::Failed) {
            Some(RequestEvent::AllGrantsFailed)
        } else if statuses.iter().all(|s| !s.is_live()) {
            Some(RequestEvent::AllGrantsEnded)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use GrantEvent as GE;
    use GrantStatus as GS;
    use RequestEvent as RE;
    use RequestStatus as RS;

    const REQUEST_EVENTS: [RequestEvent; 8] = [
        RE::Approval { complete: true },
        RE::Approval { complete: false },
        RE::Rejection,
        RE::Cancel,
        RE::DecisionTimeout,
        RE::GrantActive,
        RE::AllGrantsEnded,
        RE::AllGrantsFailed,
    ];

    /// The complete table: every pair not listed here must be refused.
    fn expected_request(s: RS, e: RE) -> Option<RS> {
        Some(match (s, e) {
            (RS::Pending, RE::Approval { complete: true }) => RS::Approved,
            (RS::Pending, RE::Approval { complete: false }) => RS::Pending,
            (RS::Pending, RE::Rejection) => RS::Rejected,
            (RS::Pending, RE::Cancel) => RS::Cancelled,
            (RS::Pending, RE::DecisionTimeout) => RS::TimedOut,
            (RS::Approved, RE::Cancel) => RS::Cancelled,
            (RS::Approved, RE::GrantActive) => RS::Active,
            (RS::Approved, RE::AllGrantsFailed) => RS::Failed,
            (RS::Approved, RE::AllGrantsEnded) => RS::Ended,
            (RS::Active, RE::GrantActive) => RS::Active,
            (RS::Active, RE::AllGrantsEnded) => RS::Ended,
            _ => return None,
        })
    }

    #[test]
    fn every_request_pair() {
        let mut allowed = 0;
        for s in RS::ALL {
            for e in REQUEST_EVENTS {
                let got = s.apply(e);
                match expected_request(s, e) {
                    Some(next) => {
                        assert_eq!(got, Ok(next), "{s} + {e:?}");
                        allowed += 1;
                    }
                    None => assert!(got.is_err(), "{s} + {e:?} must be refused, got {got:?}"),
                }
            }
        }
        assert_eq!(allowed, 11);
    }

    #[test]
    fn terminal_request_states_take_nothing() {
        for s in [
            RS::Ended,
            RS::Rejected,
            RS::Cancelled,
            RS::TimedOut,
            RS::Failed,
        ] {
            assert!(!s.is_open());
            for e in REQUEST_EVENTS {
                assert!(s.apply(e).is_err(), "{s} + {e:?}");
            }
        }
    }

    #[test]
    fn deciding_twice_is_refused() {
        let approved = RS::Pending.apply(RE::Approval { complete: true }).unwrap();
        assert!(approved.apply(RE::Rejection).is_err());
        assert!(approved.apply(RE::Approval { complete: true }).is_err());
    }

    const GRANT_EVENTS: [GrantEvent; 7] = [
        GE::ProvisionStarted,
        GE::CreationSucceeded,
        GE::CreationFailed,
        GE::DeprovisionStarted,
        GE::DeletionSucceeded,
        GE::Discarded,
        GE::AssignmentMissing,
    ];

    fn expected_grant(s: GS, e: GE) -> Option<GS> {
        Some(match (s, e) {
            (GS::Scheduled, GE::ProvisionStarted) => GS::Provisioning,
            (GS::Scheduled, GE::CreationSucceeded) => GS::Active,
            (GS::Scheduled, GE::CreationFailed) => GS::Failed,
            (GS::Scheduled, GE::Discarded) => GS::Revoked,
            (GS::Provisioning, GE::CreationSucceeded) => GS::Active,
            (GS::Provisioning, GE::CreationFailed) => GS::Failed,
            (GS::Active, GE::DeprovisionStarted) => GS::Deprovisioning,
            (GS::Provisioning, GE::DeprovisionStarted) => GS::Deprovisioning,
            (GS::Active, GE::AssignmentMissing) => GS::Scheduled,
            (GS::Active, GE::DeletionSucceeded) => GS::Revoked,
            (GS::Deprovisioning, GE::DeletionSucceeded) => GS::Revoked,
            _ => return None,
        })
    }

    #[test]
    fn every_grant_pair() {
        let mut allowed = 0;
        for s in GS::ALL {
            for e in GRANT_EVENTS {
                let got = s.apply(e);
                match expected_grant(s, e) {
                    Some(next) => {
                        assert_eq!(got, Ok(next), "{s} + {e:?}");
                        allowed += 1;
                    }
                    None => assert!(got.is_err(), "{s} + {e:?} must be refused, got {got:?}"),
                }
            }
        }
        assert_eq!(allowed, 11);
    }

    #[test]
    fn active_only_through_success() {
        // Invariant 1: nothing but a reported success makes a grant active.
        for s in GS::ALL {
            for e in GRANT_EVENTS {
                if s.apply(e) == Ok(GS::Active) {
                    assert_eq!(e, GE::CreationSucceeded, "{s} + {e:?}");
                }
                if s.apply(e) == Ok(GS::Revoked) {
                    assert!(
                        matches!(e, GE::DeletionSucceeded | GE::Discarded),
                        "{s} + {e:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn status_strings_round_trip() {
        for s in RS::ALL {
            assert_eq!(RS::parse(s.as_str()), Some(s));
        }
        for s in GS::ALL {
            assert_eq!(GS::parse(s.as_str()), Some(s));
        }
        assert_eq!(RS::parse("bogus"), None);
    }

    #[test]
    fn grants_decide_the_request_event() {
        use GrantStatus::*;
        assert_eq!(RequestEvent::from_grants(&[]), None);
        assert_eq!(RequestEvent::from_grants(&[Scheduled, Provisioning]), None);
        assert_eq!(
            RequestEvent::from_grants(&[Revoked, Active, Provisioning]),
            Some(RequestEvent::GrantActive)
        );
        assert_eq!(
            RequestEvent::from_grants(&[Failed, Failed]),
            Some(RequestEvent::AllGrantsFailed)
        );
        assert_eq!(
            RequestEvent::from_grants(&[Failed, Revoked]),
            Some(RequestEvent::AllGrantsEnded)
        );
        assert_eq!(RequestEvent::from_grants(&[Revoked, Deprovisioning]), None);
    }
}
