//! Ticket formats per entitlement (`policy.ticket_pattern`, issue #12): a regular
//! expression the whole ticket reference must match, checked on the server with the
//! `regex` crate, whose engine runs in time linear in the input (no backtracking, so no
//! pattern can be made to take exponential time), with a cap on the compiled size. The
//! configuration also gives an example, shown on the form and checked against the pattern
//! when the configuration is read.

/// The longest pattern accepted, in bytes.
pub const MAX_PATTERN_LEN: usize = 500;
/// The compiled program's size limit (the `regex` crate's `size_limit`), in bytes.
#[cfg(feature = "ssr")]
const COMPILED_SIZE_LIMIT: usize = 64 * 1024;

/// A compiled ticket format: the pattern, anchored at both ends.
#[cfg(feature = "ssr")]
#[derive(Clone, Debug)]
pub struct TicketFormat {
    pattern: String,
    regex: regex::Regex,
}

#[cfg(feature = "ssr")]
impl TicketFormat {
    /// Compiles `pattern` (anchored: the whole ticket must match), or says why it cannot.
    pub fn compile(pattern: &str) -> Result<Self, String> {
        if pattern.trim().is_empty() {
            return Err("policy.ticket_pattern is empty".into());
        }
        if pattern.len() > MAX_PATTERN_LEN {
            return Err(format!(
                "policy.ticket_pattern is longer than {MAX_PATTERN_LEN} bytes"
            ));
        }
        let regex = regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
            .size_limit(COMPILED_SIZE_LIMIT)
            .dfa_size_limit(COMPILED_SIZE_LIMIT)
            .build()
            .map_err(|e| match e {
                regex::Error::CompiledTooBig(_) => format!(
                    "policy.ticket_pattern compiles to more than {} KiB: simplify it",
                    COMPILED_SIZE_LIMIT / 1024
                ),
                other => {
                    format!("policy.ticket_pattern is not a valid regular expression: {other}")
                }
            })?;
        Ok(Self {
            pattern: pattern.to_owned(),
            regex,
        })
    }

    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// Whether the whole of `ticket` (trimmed) has this format.
    pub fn matches(&self, ticket: &str) -> bool {
        self.regex.is_match(ticket.trim())
    }
}

/// What the requester is told when a ticket does not have the entitlement's format.
pub fn mismatch_message(example: Option<&str>) -> String {
    match example {
        Some(e) => format!("this entitlement needs a ticket like {e}"),
        None => "this ticket does not have the format this entitlement needs".into(),
    }
}

#[cfg(all(test, feature = "ssr"))]
mod tests {
    use super::*;

    #[test]
    fn the_whole_ticket_must_match() {
        let f = TicketFormat::compile(r"(CHG|INC)-\d{4,6}").unwrap();
        assert!(f.matches("CHG-1234"));
        assert!(f.matches(" INC-123456 "));
        assert!(!f.matches("CHG-123"));
        assert!(!f.matches("XCHG-1234"), "anchored at the start");
        assert!(!f.matches("CHG-1234567"), "anchored at the end");
        assert!(!f.matches("CHG-1234\nINC-1234"));
        // An alternation does not escape the anchors.
        let f = TicketFormat::compile("A|B").unwrap();
        assert!(f.matches("A") && f.matches("B"));
        assert!(!f.matches("AB") && !f.matches("xB"));
    }

    #[test]
    fn bad_too_long_and_too_big_patterns_are_refused() {
        assert!(TicketFormat::compile("(")
            .unwrap_err()
            .contains("not a valid regular expression"));
        assert!(TicketFormat::compile("  ").unwrap_err().contains("empty"));
        assert!(TicketFormat::compile(&"a".repeat(MAX_PATTERN_LEN + 1))
            .unwrap_err()
            .contains("longer than"));
        // Short, but enormous once compiled.
        assert!(TicketFormat::compile(r"\w{200}\w{200}\w{100}")
            .unwrap_err()
            .contains("compiles to more than"));
        // Backreferences and lookaround (the backtracking features) do not exist here.
        assert!(TicketFormat::compile(r"(a)\1").is_err());
        assert!(TicketFormat::compile(r"(?=a)a").is_err());
    }

    #[test]
    fn a_hostile_input_is_matched_in_linear_time() {
        // The classic catastrophic-backtracking pattern on a long near-miss: a
        // backtracking engine would not finish in the lifetime of the test run.
        let f = TicketFormat::compile(r"(a+)+b").unwrap();
        assert!(!f.matches(&"a".repeat(100_000)));
        assert!(f.matches(&format!("{}b", "a".repeat(100_000))));
    }
}
