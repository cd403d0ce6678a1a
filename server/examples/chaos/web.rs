//! The portal as a browser sees it: sign-in through the OpenID provider and server
//! function calls to any running replica.

use super::*;

/// The portal as a browser and a load balancer see it: requests go to any running
/// replica, with the public URL's `Origin` (CSRF) and the person's session cookie.
pub(crate) struct Web {
    pub(crate) http: reqwest::Client,
    pub(crate) fleet: Arc<Fleet>,
    pub(crate) public: String,
    pub(crate) rng: Mutex<StdRng>,
}

impl Web {
    pub(crate) fn base(&self) -> Option<String> {
        let ports = self.fleet.live_ports();
        if ports.is_empty() {
            return None;
        }
        let i = self.rng.lock().unwrap().gen_range(0..ports.len());
        Some(format!("http://127.0.0.1:{}", ports[i]))
    }

    pub(crate) async fn get(&self, path: &str, cookies: &str) -> Result<reqwest::Response> {
        let base = self.base().context("no replica running")?;
        Ok(self
            .http
            .get(format!("{base}{path}"))
            .header("cookie", cookies)
            .send()
            .await?)
    }

    /// Calls a server function; `Ok(body)` on 200, `Err` with the status and body otherwise.
    pub(crate) async fn server_fn(
        &self,
        path: &str,
        session: &str,
        form: &[(&str, &str)],
    ) -> Result<String> {
        let base = self.base().context("no replica running")?;
        let res = self
            .http
            .post(format!("{base}{path}"))
            .header("origin", &self.public)
            .header("sec-fetch-site", "same-origin")
            .header("accept", "application/json")
            .header("cookie", session)
            .form(form)
            .send()
            .await?;
        let status = res.status();
        let body = res.text().await.unwrap_or_default();
        if status.is_success() {
            Ok(body)
        } else {
            bail!(
                "{path}: {status}: {}",
                body.chars().take(200).collect::<String>()
            )
        }
    }
}

/// A browser at the OpenID provider (as in tests/oidc.rs): keeps the provider's cookies,
/// follows its redirects, fills in its login form, stops at the redirect to the portal.
pub(crate) async fn sign_in(web: &Web, login: &str, password: &str) -> Result<String> {
    let res = web.get("/auth/login?return_to=%2F", "").await?;
    anyhow::ensure!(res.status().is_redirection(), "login: {}", res.status());
    let login_cookie = set_cookie(&res, "portcullis_login").context("no login cookie")?;
    let mut url = res.headers()["location"].to_str()?.to_owned();
    let mut jar: HashMap<String, String> = HashMap::new();
    let jar_header = |jar: &HashMap<String, String>| {
        jar.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let keep = |jar: &mut HashMap<String, String>, res: &reqwest::Response| {
        for v in res.headers().get_all("set-cookie") {
            let Ok(v) = v.to_str() else { continue };
            let Some((k, val)) = v.split(';').next().and_then(|p| p.split_once('=')) else {
                continue;
            };
            if val.is_empty() || v.contains("Max-Age=0") || v.contains("expires=Thu, 01 Jan 1970") {
                jar.remove(k);
            } else {
                jar.insert(k.to_owned(), val.to_owned());
            }
        }
    };
    for _ in 0..20 {
        if let Some(path) = url.strip_prefix(&web.public) {
            let res = web.get(path, &login_cookie).await?;
            return set_cookie(&res, "portcullis_session")
                .with_context(|| format!("no session after the callback: {}", res.status()));
        }
        let res = web
            .http
            .get(&url)
            .header("cookie", jar_header(&jar))
            .send()
            .await?;
        keep(&mut jar, &res);
        let base = res.url().clone();
        if res.status().is_redirection() {
            url = base.join(res.headers()["location"].to_str()?)?.to_string();
            continue;
        }
        let body = res.text().await?;
        let action = body
            .split("action=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .with_context(|| format!("no form at {url}"))?
            .to_owned();
        let res = web
            .http
            .post(base.join(&action)?)
            .header("cookie", jar_header(&jar))
            .form(&[("login", login), ("password", password)])
            .send()
            .await?;
        keep(&mut jar, &res);
        anyhow::ensure!(
            res.status().is_redirection(),
            "login as {login}: {}",
            res.status()
        );
        url = base.join(res.headers()["location"].to_str()?)?.to_string();
    }
    bail!("too many redirects signing in {login}")
}

pub(crate) fn set_cookie(res: &reqwest::Response, name: &str) -> Option<String> {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap_or_default().to_owned())
}
