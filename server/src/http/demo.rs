//! Demo sign-in: pick a persona (demo mode only, loopback only: invariant 10).

use super::*;

pub(super) async fn demo_login_page(Query(q): Query<ReturnTo>) -> Html<String> {
    let return_to = escape_html(&safe_return_to(q.return_to.as_deref()));
    let mut buttons = String::new();
    for p in seed::personas() {
        let name = p.user_id.trim_start_matches("demo|").to_owned();
        buttons.push_str(&format!(
            r#"<form method="post" action="/demo/login" class="persona">
<input type="hidden" name="persona" value="{name}"><input type="hidden" name="return_to" value="{return_to}">
<button type="submit" data-testid="persona-{name}"><strong>{}</strong><span>{}</span><small>groups: {}</small></button></form>"#,
            escape_html(&p.display_name),
            escape_html(seed::persona_blurb(&name)),
            escape_html(&p.groups.join(", "))
        ));
    }
    let main = format!(
        r#"<h1>Sign in to the demo</h1>
<p class="lead">Demo mode: pick a persona. In production, people sign in with your identity provider.</p>
<div class="personas">{buttons}</div>"#
    );
    Html(page("Sign in · Portcullis demo", Some("demo"), &main))
}

#[derive(Deserialize)]
pub(super) struct DemoLogin {
    persona: String,
    return_to: Option<String>,
}

pub(super) async fn demo_login(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<DemoLogin>,
) -> Response {
    let Some(principal) = seed::personas()
        .into_iter()
        .find(|p| p.user_id == format!("demo|{}", form.persona))
    else {
        return (
            StatusCode::BAD_REQUEST,
            Html("Unknown persona. <a href=\"/demo/login\">Try again</a>.".to_string()),
        )
            .into_response();
    };
    match start_session(&state, &headers, &principal, true, None).await {
        Ok(cookie) => {
            state.metrics.sign_in("ok");
            let mut res = Redirect::to(&safe_return_to(form.return_to.as_deref())).into_response();
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                res.headers_mut().insert(header::SET_COOKIE, v);
            }
            res
        }
        Err(e) => {
            state.metrics.sign_in("error");
            let reference = internal(e);
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Html(format!(
                    "{reference} <a href=\"/demo/login\">Try again</a>."
                )),
            )
                .into_response()
        }
    }
}
