//! The exports (admins only): every audit event matching the audit page's filter, oldest
//! first, as CSV or, with `?format=jsonl`, JSON Lines, streamed a page at a time; and the
//! access explorer's rows as CSV.

use super::*;
use crate::export::Format;
use futures::TryStreamExt;

#[derive(Deserialize)]
pub(super) struct AuditExportQuery {
    person: Option<String>,
    entitlement: Option<String>,
    action: Option<String>,
    format: Option<String>,
}

pub(super) async fn audit_export(
    State(state): State<AppState>,
    Query(q): Query<AuditExportQuery>,
    req: Request<Body>,
) -> Response {
    let Some(session) = req.extensions().get::<Session>().cloned() else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let format = match q.format.as_deref().filter(|f| !f.is_empty()) {
        None => Format::Csv,
        Some(f) => match Format::parse(f) {
            Some(format) => format,
            None => {
                return (StatusCode::BAD_REQUEST, "format is csv or jsonl").into_response();
            }
        },
    };
    let filter = app::views::AuditFilter {
        person: q.person,
        entitlement: q.entitlement,
        action: q.action,
        // The export is every matching event, never a page.
        before: None,
    };
    match state
        .portal
        .audit_export(&session.principal, filter, format)
        .await
    {
        Ok(chunks) => {
            // A failure halfway can only cut the body short: log it where it happens.
            let body = Body::from_stream(chunks.inspect_err(|e| {
                tracing::error!(error = format!("{e:#}"), "audit export cut short");
            }));
            attachment(format.content_type(), format.file_name(), body)
        }
        Err(e) => refusal(e),
    }
}

pub(super) async fn access_export(
    State(state): State<AppState>,
    Query(filter): Query<app::views::AccessFilter>,
    req: Request<Body>,
) -> Response {
    let Some(session) = req.extensions().get::<Session>().cloned() else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    match state.portal.access_export(&session.principal, filter).await {
        Ok(csv) => attachment(
            "text/csv; charset=utf-8",
            "portcullis-access.csv",
            csv.into(),
        ),
        Err(e) => refusal(e),
    }
}

/// A download: its type and file name, never cached.
fn attachment(content_type: &str, file_name: &str, body: Body) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file_name}\""),
            ),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        body,
    )
        .into_response()
}

/// Each refusal with its own status (a filter too long is 400, not 500); an internal
/// error shows only its reference (`AppError`'s text).
fn refusal(e: app::error::AppError) -> Response {
    (
        StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        e.to_string(),
    )
        .into_response()
}
