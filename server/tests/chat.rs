//! Chat notifications (issue #12, item 9): a Slack-compatible incoming webhook, here a
//! local HTTP receiver on 127.0.0.1 that records every post, hears of a request, its
//! decision, the grant and its end, and of a break-glass use; through the outbox, with
//! people's text escaped, never with the webhook's URL anywhere the portal writes; a
//! failing webhook is retried, then parked with an alert, and never holds up access. Both
//! on SQLite and PostgreSQL.

mod common;

use app::domain::{ApproverRule, Policy};
use app::ssr::Portal;
use axum::extract::State;
use axum::http::StatusCode;
use common::*;
use portcullis::chat::ChatMailer;
use portcullis::config::ChatConfig;
use portcullis::config::Secret;
use portcullis::mailer::OutboxOnly;
use portcullis::seed::{PRODUCTION, PS_AUDIT};
use portcullis::store;
use serde_json::Value;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

both!(
    a_webhook_hears_of_a_request_from_asking_to_its_end,
    a_failing_webhook_is_parked_and_never_holds_up_access,
);

/// The webhook's secret part: it must never show up in the outbox, alerts or logs.
const TOKEN: &str = "T000-SECRET-TOKEN";

/// A local webhook: records each post's JSON, answers with `status`.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Value>>>,
    status: Arc<AtomicU16>,
    _task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start() -> Self {
        type Shared = (Arc<Mutex<Vec<Value>>>, Arc<AtomicU16>);
        async fn hook(State((got, status)): State<Shared>, body: String) -> StatusCode {
            let code = status.load(Ordering::SeqCst);
            if code == 200 {
                got.lock()
                    .unwrap()
                    .push(serde_json::from_str(&body).expect("a JSON body"));
            }
            StatusCode::from_u16(code).unwrap()
        }
        let got = Arc::new(Mutex::new(Vec::new()));
        let status = Arc::new(AtomicU16::new(200));
        let app = axum::Router::new()
            .route(&format!("/services/{TOKEN}"), axum::routing::post(hook))
            .with_state((got.clone(), status.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/services/{TOKEN}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            url,
            got,
            status,
            _task: task,
        }
    }

    fn texts(&self) -> Vec<String> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .map(|v| v["text"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    fn config(&self) -> ChatConfig {
        ChatConfig {
            webhooks: [("security".to_owned(), Secret::new(self.url.clone()))].into(),
            everything: Vec::new(),
        }
    }
}

fn chatty(approvers: ApproverRule, break_glass: bool) -> Policy {
    Policy {
        approvers,
        break_glass,
        chat: vec!["security".into()],
        ..policy()
    }
}

/// Each post's first line (its title, in bold).
fn titles(texts: &[String]) -> Vec<String> {
    texts
        .iter()
        .map(|t| t.lines().next().unwrap_or_default().to_owned())
        .collect()
}

async fn a_webhook_hears_of_a_request_from_asking_to_its_end(b: Backend) {
    let env = TestEnv::new(b).await;
    let hook = Receiver::start().await;
    let mailer = Arc::new(ChatMailer::new(Arc::new(OutboxOnly), &hook.config()).unwrap());
    let w = env.worker_full(env.sim.clone(), mailer, settings());
    let approvers = ApproverRule {
        groups: vec!["cloud-approvers".into()],
        ..Default::default()
    };
    env.add_entitlement(&entitlement(
        "chatty",
        PRODUCTION,
        PS_AUDIT,
        chatty(approvers, false),
    ))
    .await;
    let (alice, carol) = (person("alice"), person("carol"));
    let why = app::domain::RequestDraft {
        justification: "<!channel> look at <http://evil.example|this> & INC-42".into(),
        ..draft("1h")
    };
    let rid = env
        .portal
        .create_request(&alice, "chatty", why)
        .await
        .unwrap();
    w.drain().await.unwrap();
    let texts = hook.texts();
    assert_eq!(texts.len(), 1, "{texts:?}");
    let text = &texts[0];
    assert!(
        text.starts_with("*Approval needed: Test chatty for Alice Employee*\n"),
        "{text}"
    );
    assert!(
        text.contains("Alice Employee asks for Test chatty for 1h."),
        "{text}"
    );
    // What Alice typed can neither mention everyone nor make a link.
    assert!(
        text.contains("&lt;!channel&gt; look at &lt;http://evil.example|this&gt; &amp; INC-42"),
        "{text}"
    );
    assert!(!text.contains("<!channel>"), "{text}");
    assert!(
        text.ends_with(&format!("<{PUBLIC_URL}/requests/{rid}|Open the request>")),
        "{text}"
    );

    env.portal.decide(&carol, &rid, true, "ok").await.unwrap();
    env.settle(&w).await;
    assert_eq!(env.request_status(&rid).await, "active");
    env.set_time(T0.millis() + HOUR_MS + 1000);
    env.settle(&w).await;
    assert_eq!(env.request_status(&rid).await, "ended");
    let titles = titles(&hook.texts());
    assert_eq!(
        titles,
        [
            "*Approval needed: Test chatty for Alice Employee*",
            "*Request approved: Test chatty for Alice Employee*",
            "*Access granted: SecurityAudit on production (333333333333) to Alice Employee*",
            "*Access ended: SecurityAudit on production (333333333333) for Alice Employee*",
        ],
        "in order, once each"
    );
    assert!(hook.texts()[1].contains("Carol Approver approved Alice Employee's request"));

    // The outbox names the webhook, never its URL; each row was delivered.
    let rows = env.mail_to("chat:security").await;
    assert_eq!(rows.len(), 4);
    for r in &rows {
        assert_eq!(r.status, store::MailStatus::Sent, "{r:?}");
        let all = format!(
            "{} {} {} {}",
            r.recipient, r.subject, r.body_text, r.body_html
        );
        assert!(!all.contains(TOKEN), "{all}");
    }
    // Mail went on as before, to Alice and Carol, not to the webhook's name.
    assert!(!env.mail_subjects(&alice.email).await.is_empty());
}

async fn a_failing_webhook_is_parked_and_never_holds_up_access(b: Backend) {
    let env = TestEnv::new(b).await;
    let hook = Receiver::start().await;
    hook.status.store(500, Ordering::SeqCst);
    let mailer = Arc::new(ChatMailer::new(Arc::new(OutboxOnly), &hook.config()).unwrap());
    let w = env.worker_full(
        env.sim.clone(),
        mailer,
        portcullis::config::WorkerSettings {
            mail_max_attempts: 3,
            ..settings()
        },
    );
    env.add_entitlement(&entitlement(
        "glass",
        PRODUCTION,
        PS_AUDIT,
        chatty(ApproverRule::default(), true),
    ))
    .await;
    let rid = env
        .portal
        .create_request(&person("alice"), "glass", draft("30m"))
        .await
        .unwrap();
    // Access is granted at once, whatever the webhook does.
    env.settle(&w).await;
    assert_eq!(env.request_status(&rid).await, "active");
    env.run_until(&w, env.now().millis() + 60_000, Duration::from_secs(1))
        .await;
    let rows = env.mail_to("chat:security").await;
    assert_eq!(rows.len(), 2, "break-glass used, access granted: {rows:?}");
    assert!(rows
        .iter()
        .any(|r| r.subject.starts_with("Break-glass used: Test glass")));
    for r in &rows {
        assert_eq!(r.status, store::MailStatus::Parked, "{r:?}");
        let error = r.last_error.clone().unwrap_or_default();
        assert!(error.contains("webhook security answered 500"), "{error}");
        assert!(!error.contains(TOKEN), "{error}");
    }
    let alerts = env.alerts("mail_parked").await;
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    assert!(alerts.iter().all(|a| !a.message.contains(TOKEN)));
    assert!(hook.texts().is_empty());

    // Back up: an admin resends the parked messages and they arrive.
    hook.status.store(200, Ordering::SeqCst);
    {
        let mut conn = env.conn().await;
        for r in &rows {
            store::requeue_parked_mail(&mut conn, &r.outbox_id, env.now())
                .await
                .unwrap();
        }
    }
    env.settle(&w).await;
    let titles = titles(&hook.texts());
    assert_eq!(titles.len(), 2, "{titles:?}");
    assert!(titles.contains(&"*Break-glass used: Test glass by Alice Employee*".to_owned()));
}
