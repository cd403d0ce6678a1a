//! The audit log as CSV, with the page's filter (admins only).

use super::*;

#[derive(Deserialize)]
pub(super) struct AuditCsvQuery {
    person: Option<String>,
    entitlement: Option<String>,
    action: Option<String>,
}

pub(super) fn csv_field(s: &str) -> String {
    // Quote everything; neutralise spreadsheet formulas.
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    format!("\"{}\"", s.replace('"', "\"\""))
}

pub(super) async fn audit_csv(
    State(state): State<AppState>,
    Query(q): Query<AuditCsvQuery>,
    req: Request<Body>,
) -> Response {
    let Some(session) = req.extensions().get::<Session>().cloned() else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let filter = app::views::AuditFilter {
        person: q.person,
        entitlement: q.entitlement,
        action: q.action,
    };
    match state.portal.audit_log(&session.principal, filter).await {
        Ok(rows) => {
            let mut out = String::from("seq,at,actor,action,subject,entitlement,detail\n");
            for r in rows {
                out.push_str(&format!(
                    "{},{},{},{},{},{},{}\n",
                    r.seq,
                    csv_field(&r.at),
                    csv_field(&r.actor),
                    csv_field(&r.action),
                    csv_field(&r.subject),
                    csv_field(&r.entitlement),
                    csv_field(&r.detail)
                ));
            }
            (
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                    (
                        header::CONTENT_DISPOSITION,
                        "attachment; filename=\"portcullis-audit.csv\"",
                    ),
                ],
                out,
            )
                .into_response()
        }
        Err(e @ app::error::AppError::Forbidden(_)) => {
            (StatusCode::FORBIDDEN, e.to_string()).into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_is_quoted_and_formula_safe() {
        assert_eq!(csv_field("a\"b"), "\"a\"\"b\"");
        assert_eq!(csv_field("=SUM(A1)"), "\"'=SUM(A1)\"");
    }
}
