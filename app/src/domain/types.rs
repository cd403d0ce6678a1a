//! Values that validate on construction. A raw `String` from a form or a URL never
//! travels past the boundary: it becomes one of these, or a [`FieldError`].

use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// A problem with one form field, shown next to that field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &str, message: impl Into<String>) -> Self {
        Self {
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

macro_rules! string_newtype {
    ($name:ident) => {
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                Self::parse(&s)
            }
        }
    };
}

string_newtype!(AccountId);
string_newtype!(OuId);
string_newtype!(PermissionSetArn);
string_newtype!(EntitlementId);
string_newtype!(RecordId);
string_newtype!(Justification);
string_newtype!(TicketId);
string_newtype!(Comment);

fn has_forbidden_control(s: &str) -> bool {
    // Text areas legitimately carry line breaks and tabs; anything else is refused.
    s.chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
}

impl AccountId {
    /// An AWS account id: exactly 12 digits.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(s.to_owned()))
        } else {
            Err("an AWS account id is exactly 12 digits".into())
        }
    }
}

impl OuId {
    /// An organizational unit (`ou-xxxx-yyyyyyyy`) or root (`r-xxxx`) id.
    pub fn parse(s: &str) -> Result<Self, String> {
        let ok_chars = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric());
        let valid = match s.split('-').collect::<Vec<_>>().as_slice() {
            ["ou", a, b] => ok_chars(a) && ok_chars(b) && a.len() <= 32 && b.len() <= 32,
            ["r", a] => ok_chars(a) && a.len() <= 32,
            _ => false,
        };
        if valid {
            Ok(Self(s.to_owned()))
        } else {
            Err("an OU id looks like ou-ab12-cd34ef56 (or r-ab12 for a root)".into())
        }
    }
}

impl PermissionSetArn {
    /// `arn:<partition>:sso:::permissionSet/<instance id>/ps-<id>`, as IAM Identity Center prints it.
    pub fn parse(s: &str) -> Result<Self, String> {
        const ERR: &str =
            "a permission set ARN looks like arn:aws:sso:::permissionSet/ssoins-…/ps-…";
        let rest = s.strip_prefix("arn:").ok_or(ERR)?;
        let (partition, rest) = rest.split_once(':').ok_or(ERR)?;
        if !matches!(
            partition,
            "aws" | "aws-us-gov" | "aws-cn" | "aws-iso" | "aws-iso-b"
        ) {
            return Err(ERR.into());
        }
        let rest = rest.strip_prefix("sso:::permissionSet/").ok_or(ERR)?;
        let (instance, ps) = rest.split_once('/').ok_or(ERR)?;
        let id_ok = |p: &str| {
            (1..=64).contains(&p.len())
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        };
        let instance_ok =
            (instance.starts_with("ssoins-") || instance.starts_with("ins-")) && id_ok(instance);
        if instance_ok && ps.starts_with("ps-") && id_ok(ps) {
            Ok(Self(s.to_owned()))
        } else {
            Err(ERR.into())
        }
    }

    /// The short `ps-…` id, for display.
    pub fn short_id(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }
}

impl EntitlementId {
    /// A slug: lowercase letters, digits and dashes, 1 to 64 characters.
    pub fn parse(s: &str) -> Result<Self, String> {
        if (1..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            Ok(Self(s.to_owned()))
        } else {
            Err("unknown entitlement".into())
        }
    }
}

impl RecordId {
    /// Ids of requests, grants, jobs: 32 lowercase hex characters, made by the server.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(Self(s.to_owned()))
        } else {
            Err("not a valid id".into())
        }
    }

    pub fn from_random(bytes: [u8; 16]) -> Self {
        Self(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }
}

impl Justification {
    pub const MAX_CHARS: usize = 1000;

    /// Why access is needed: required, at most 1000 characters, no control characters.
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if t.is_empty() {
            return Err("a justification is required".into());
        }
        if t.chars().count() > Self::MAX_CHARS {
            return Err(format!(
                "the justification is too long (at most {} characters)",
                Self::MAX_CHARS
            ));
        }
        if has_forbidden_control(t) {
            return Err("the justification contains control characters".into());
        }
        Ok(Self(t.to_owned()))
    }
}

impl TicketId {
    /// A change or incident ticket reference such as `CHG-1234` or `INC0012345`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if t.is_empty() {
            return Err("a ticket reference is required for this entitlement".into());
        }
        let ok = t.len() <= 64
            && t.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:/#".contains(&b));
        if ok {
            Ok(Self(t.to_owned()))
        } else {
            Err(
                "a ticket reference is letters, digits and - _ . : / # (at most 64), like CHG-1234"
                    .into(),
            )
        }
    }
}

impl Comment {
    pub const MAX_CHARS: usize = 1000;

    /// An approver's comment: may be empty, at most 1000 characters, no control characters.
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if t.chars().count() > Self::MAX_CHARS {
            return Err(format!(
                "the comment is too long (at most {} characters)",
                Self::MAX_CHARS
            ));
        }
        if has_forbidden_control(t) {
            return Err("the comment contains control characters".into());
        }
        Ok(Self(t.to_owned()))
    }
}

/// How long access is requested for. Parsed from `90m`, `1h30m`, `2h`, `45s`, or a bare
/// number of minutes. Bounds depend on the entitlement and are checked by the policy.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AccessDuration(Duration);

impl AccessDuration {
    /// Longer than any policy allows; a bound that keeps arithmetic far from overflow.
    pub const HARD_MAX: Duration = Duration::from_secs(366 * 24 * 3600);

    pub fn parse(s: &str) -> Result<Self, String> {
        const ERR: &str = "write a duration like 30m, 1h or 1h30m";
        let t: String = s.trim().to_ascii_lowercase().split_whitespace().collect();
        if t.is_empty() {
            return Err("a duration is required".into());
        }
        if t.bytes().all(|b| b.is_ascii_digit()) {
            let minutes: u64 = t.parse().map_err(|_| ERR.to_string())?;
            return Self::from_secs(minutes.saturating_mul(60));
        }
        let mut total: u64 = 0;
        let mut num = String::new();
        let mut seen_unit = false;
        for c in t.chars() {
            if c.is_ascii_digit() {
                num.push(c);
                continue;
            }
            let unit = match c {
                'd' => 86_400,
                'h' => 3600,
                'm' => 60,
                's' => 1,
                _ => return Err(ERR.into()),
            };
            let n: u64 = num.parse().map_err(|_| ERR.to_string())?;
            total = total.saturating_add(n.saturating_mul(unit));
            num.clear();
            seen_unit = true;
        }
        if !num.is_empty() || !seen_unit {
            return Err(ERR.into());
        }
        Self::from_secs(total)
    }

    pub fn from_secs(secs: u64) -> Result<Self, String> {
        let d = Duration::from_secs(secs);
        if d.is_zero() {
            Err("the duration must be longer than zero".into())
        } else if d > Self::HARD_MAX {
            Err("the duration is far too long".into())
        } else {
            Ok(Self(d))
        }
    }

    pub fn as_duration(self) -> Duration {
        self.0
    }

    pub fn as_secs(self) -> u64 {
        self.0.as_secs()
    }
}

impl fmt::Display for AccessDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&super::time::format_duration(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_ids() {
        assert!(AccountId::parse("123456789012").is_ok());
        for bad in ["12345678901", "1234567890123", "12345678901a", "", " "] {
            assert!(AccountId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ou_ids() {
        assert!(OuId::parse("ou-ab12-cd34ef56").is_ok());
        assert!(OuId::parse("r-ab12").is_ok());
        for bad in ["ou-ab12", "ou--x", "x-ab12-cd", "ou-ab 2-cd", ""] {
            assert!(OuId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn permission_set_arns() {
        let good = "arn:aws:sso:::permissionSet/ssoins-1234567890abcdef/ps-1234567890abcdef";
        let arn = PermissionSetArn::parse(good).unwrap();
        assert_eq!(arn.short_id(), "ps-1234567890abcdef");
        for bad in [
            "arn:aws:iam::123456789012:role/x",
            "arn:evil:sso:::permissionSet/ssoins-1/ps-1",
            "arn:aws:sso:::permissionSet/ssoins-1234/",
            "arn:aws:sso:::permissionSet/other-1/ps-1",
            "arn:aws:sso:::permissionSet/ssoins-1/ps-1; DROP TABLE",
        ] {
            assert!(PermissionSetArn::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn justifications() {
        assert_eq!(
            Justification::parse("  fix INC-1 \n").unwrap().as_str(),
            "fix INC-1"
        );
        assert!(Justification::parse("   ").is_err());
        assert!(Justification::parse("a\u{0007}b").is_err());
        assert!(Justification::parse("line one\nline two").is_ok());
        assert!(Justification::parse(&"x".repeat(1000)).is_ok());
        assert!(Justification::parse(&"x".repeat(1001)).is_err());
    }

    #[test]
    fn tickets_and_comments() {
        assert!(TicketId::parse("CHG-1234").is_ok());
        assert!(TicketId::parse("INC0012345").is_ok());
        assert!(TicketId::parse("").is_err());
        assert!(TicketId::parse("<script>").is_err());
        assert!(Comment::parse("").is_ok());
        assert!(Comment::parse("ok \u{0000}").is_err());
    }

    #[test]
    fn record_ids() {
        let id = RecordId::from_random([0xab; 16]);
        assert_eq!(id.as_str().len(), 32);
        assert!(RecordId::parse(id.as_str()).is_ok());
        assert!(RecordId::parse("../../etc/passwd").is_err());
        assert!(RecordId::parse(&"A".repeat(32)).is_err());
    }

    #[test]
    fn durations() {
        let secs = |s| AccessDuration::parse(s).map(|d| d.as_secs());
        assert_eq!(secs("90"), Ok(5400));
        assert_eq!(secs("1h30m"), Ok(5400));
        assert_eq!(secs("1h 30m"), Ok(5400));
        assert_eq!(secs("2H"), Ok(7200));
        assert_eq!(secs("10s"), Ok(10));
        assert_eq!(secs("1d"), Ok(86_400));
        for bad in [
            "",
            "h",
            "1x",
            "1h30",
            "-5m",
            "0m",
            "9999999999999999999h",
            "400d",
        ] {
            assert!(AccessDuration::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            AccessDuration::parse("1h30m").unwrap().to_string(),
            "1h 30m"
        );
    }

    #[test]
    fn serde_revalidates() {
        assert!(serde_json::from_str::<AccountId>("\"12\"").is_err());
        assert!(serde_json::from_str::<AccountId>("\"123456789012\"").is_ok());
    }
}

/// Where an entitlement grants access: one account, or every account below an OU.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TargetScope {
    Account { account_id: AccountId },
    Ou { ou_id: OuId },
}

/// One target of an entitlement: a scope and the permission set granted there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    #[serde(flatten)]
    pub scope: TargetScope,
    pub permission_set_arn: PermissionSetArn,
}

#[cfg(test)]
mod target_tests {
    use super::*;

    #[test]
    fn targets_parse_and_validate() {
        let t: Target = serde_json::from_str(
            r#"{"kind":"ou","ou_id":"ou-ab12-cd34ef56","permission_set_arn":"arn:aws:sso:::permissionSet/ssoins-1234567890abcdef/ps-1234567890abcdef"}"#,
        )
        .unwrap();
        assert!(matches!(t.scope, TargetScope::Ou { .. }));
        let bad = r#"{"kind":"account","account_id":"12","permission_set_arn":"arn:aws:sso:::permissionSet/ssoins-1234567890abcdef/ps-1234567890abcdef"}"#;
        assert!(serde_json::from_str::<Target>(bad).is_err());
    }
}
