//! The audit trail read out in full (invariant 6): every event matching a filter, oldest
//! first, read a page at a time with a cursor on `seq` and written as CSV or JSON Lines as
//! it is read. The admin export route and `portcullis audit export` both use it.

use crate::store::{self, AuditQuery, AuditRow, Store};
use anyhow::Result;
use futures::stream::{self, Stream};
use std::pin::Pin;

/// Events read per query.
pub const PAGE: i64 = 1000;

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Format {
    Csv,
    /// One JSON object per line.
    Jsonl,
}

impl Format {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "csv" => Some(Self::Csv),
            "jsonl" => Some(Self::Jsonl),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Csv => "text/csv; charset=utf-8",
            Self::Jsonl => "application/jsonl; charset=utf-8",
        }
    }

    pub fn file_name(self) -> &'static str {
        match self {
            Self::Csv => "portcullis-audit.csv",
            Self::Jsonl => "portcullis-audit.jsonl",
        }
    }

    /// What comes before the first event: the CSV header line.
    pub fn header(self) -> &'static str {
        match self {
            Self::Csv => "seq,at,actor_id,actor_name,action,person_id,subject_kind,subject_id,entitlement_id,detail,prev_hash,hash\n",
            Self::Jsonl => "",
        }
    }

    /// One event, with its line end.
    pub fn line(self, r: &AuditRow) -> String {
        let at = at(r);
        match self {
            Self::Csv => {
                let seq = r.seq.to_string();
                let cells = [
                    seq.as_str(),
                    &at,
                    &r.actor_id,
                    &r.actor_name,
                    &r.action,
                    r.person_id.as_deref().unwrap_or(""),
                    &r.subject_kind,
                    &r.subject_id,
                    r.entitlement_id.as_deref().unwrap_or(""),
                    &r.detail,
                    &r.prev_hash,
                    &r.hash,
                ];
                let mut line = cells.map(csv_cell).join(",");
                line.push('\n');
                line
            }
            Self::Jsonl => {
                let mut line = serde_json::json!({
                    "seq": r.seq,
                    "at": at,
                    "actor_id": r.actor_id,
                    "actor_name": r.actor_name,
                    "action": r.action,
                    "person_id": r.person_id,
                    "subject_kind": r.subject_kind,
                    "subject_id": r.subject_id,
                    "entitlement_id": r.entitlement_id,
                    "detail": r.detail,
                    "prev_hash": r.prev_hash,
                    "hash": r.hash,
                })
                .to_string();
                line.push('\n');
                line
            }
        }
    }
}

/// RFC 3339 with the milliseconds the hash covers.
fn at(r: &AuditRow) -> String {
    let secs = r.at.rfc3339();
    format!(
        "{}.{:03}Z",
        secs.trim_end_matches('Z'),
        r.at.millis().rem_euclid(1000)
    )
}

/// One CSV cell, always quoted. A cell a spreadsheet would read as a formula (starting
/// with `=`, `+`, `-`, `@`, a tab or a carriage return) is prefixed with `'`.
pub fn csv_cell(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Text chunks of an export: the header, then a chunk per page of events.
pub type Chunks = Pin<Box<dyn Stream<Item = Result<String>> + Send>>;

/// Every event matching `q` (its `limit` is ignored), oldest first, as `format`.
pub fn chunks(store: Store, q: AuditQuery, format: Format) -> Chunks {
    let q = AuditQuery { limit: PAGE, ..q };
    let header = stream::iter([Ok(format.header().to_owned())]);
    let pages = stream::try_unfold(Some(0), move |cursor| {
        let (store, q) = (store.clone(), q.clone());
        async move {
            let Some(after) = cursor else {
                return Ok(None);
            };
            let mut conn = store.conn().await?;
            let rows = store::audit_page(&mut conn, &q, after).await?;
            let Some(last) = rows.last() else {
                return Ok(None);
            };
            let next = (rows.len() as i64 == PAGE).then_some(last.seq);
            let text: String = rows.iter().map(|r| format.line(r)).collect();
            Ok(Some((text, next)))
        }
    });
    Box::pin(futures::StreamExt::chain(header, pages))
}

#[cfg(test)]
mod tests {
    use super::*;
    use app::domain::Timestamp;

    #[test]
    fn csv_is_quoted_and_formula_safe() {
        assert_eq!(csv_cell("a\"b"), "\"a\"\"b\"");
        assert_eq!(csv_cell("=SUM(A1)"), "\"'=SUM(A1)\"");
        for bad in ["+1", "-1", "@x", "\tx", "\rx"] {
            assert_eq!(csv_cell(bad), format!("\"'{bad}\""));
        }
        assert_eq!(csv_cell("plain, text"), "\"plain, text\"");
        assert_eq!(csv_cell(""), "\"\"");
    }

    #[test]
    fn lines_carry_every_field() {
        let r = AuditRow {
            seq: 7,
            at: Timestamp(1_764_000_000_123),
            actor_id: "u1".into(),
            actor_name: "=Ann".into(),
            action: "request.created".into(),
            person_id: None,
            subject_kind: "request".into(),
            subject_id: "r1".into(),
            entitlement_id: Some("e1".into()),
            detail: "say \"hi\"\nbye".into(),
            prev_hash: "p".into(),
            hash: "h".into(),
        };
        let csv = Format::Csv.line(&r);
        assert_eq!(
            csv,
            "\"7\",\"2025-11-24T16:00:00.123Z\",\"u1\",\"'=Ann\",\"request.created\",\"\",\"request\",\"r1\",\"e1\",\"say \"\"hi\"\"\nbye\",\"p\",\"h\"\n"
        );
        let json: serde_json::Value = serde_json::from_str(&Format::Jsonl.line(&r)).unwrap();
        assert_eq!(json["seq"], 7);
        assert_eq!(json["at"], "2025-11-24T16:00:00.123Z");
        assert_eq!(json["actor_name"], "=Ann");
        assert_eq!(json["person_id"], serde_json::Value::Null);
        assert_eq!(json["detail"], "say \"hi\"\nbye");
        assert_eq!(json["hash"], "h");
        assert_eq!(Format::Jsonl.line(&r).matches('\n').count(), 1);
    }
}
