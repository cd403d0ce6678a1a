//! The plain HTML pages outside the app: sign-in failures and signed out.

use super::*;

/// A plain page in the portal's look (its stylesheet and header), for what lives outside
/// the app. `main` is trusted HTML: callers escape what they put in it.
pub(super) fn page(title: &str, badge: Option<&str>, main: &str) -> String {
    let badge = badge
        .map(|b| format!(r#"<span class="badge">{}</span>"#, escape_html(b)))
        .unwrap_or_default();
    format!(
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{}</title><link rel="stylesheet" href="/pkg/portcullis.css"></head>
<body><header class="top"><a class="brand" href="/">Portcullis</a>{badge}</header>
<main class="signin">{main}</main></body></html>"#,
        escape_html(title)
    )
}

pub(super) fn error_page(status: StatusCode, message: &str, retry: &str) -> Response {
    let main = format!(
        r#"<h1>Sign-in failed</h1>
<p class="lead" data-testid="signin-error">{}</p>
<p><a class="button" href="{}" data-testid="signin-retry">Try again</a></p>"#,
        escape_html(message),
        escape_html(retry)
    );
    (
        status,
        Html(page("Sign-in failed · Portcullis", None, &main)),
    )
        .into_response()
}

/// `GET /auth/signed-out`: where sign-out ends (the provider sends the browser here).
pub(super) async fn signed_out() -> Html<String> {
    Html(page(
        "Signed out · Portcullis",
        None,
        r#"<h1>You are signed out</h1>
<p class="lead">Your Portcullis session has ended.</p>
<p><a class="button" href="/auth/login" data-testid="sign-in-again">Sign in again</a></p>"#,
    ))
}
