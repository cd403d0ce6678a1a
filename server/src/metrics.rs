//! Prometheus metrics, served at `/metrics` on a listen address of their own
//! (`metrics.listen`). Counters and histograms of what this process did are kept here;
//! the state of the whole deployment (jobs, outbox, grants, requests) is read from the
//! database at each scrape (`store::metric_gauges`), so every replica reports the same.
//! Written in the text exposition format by hand: a few dozen lines instead of a
//! dependency, checked by a real parser in the tests.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// Revocation lateness (delete issued minus `ends_at`) and approval-to-grant latency:
/// seconds, from "on time" to "an outage".
const BUCKETS: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0,
];

#[derive(Default)]
struct Histogram {
    /// Per bucket (not cumulative), then the count above the last bucket.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, v: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS.len() + 1];
        }
        let i = BUCKETS
            .iter()
            .position(|b| v <= *b)
            .unwrap_or(BUCKETS.len());
        self.counts[i] += 1;
        self.sum += v;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str) {
        let mut cumulative = 0;
        for (i, b) in BUCKETS.iter().enumerate() {
            cumulative += self.counts.get(i).copied().unwrap_or(0);
            // `1.0`, not `1`: as the official clients write bucket bounds.
            let _ = writeln!(out, "{name}_bucket{{le=\"{b:?}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum {}", self.sum);
        let _ = writeln!(out, "{name}_count {}", self.count);
    }
}

/// What this process counted since it started.
#[derive(Default)]
pub struct Metrics {
    revocation_lateness: Mutex<Histogram>,
    approval_to_grant: Mutex<Histogram>,
    /// (API, outcome) -> calls
    aws_calls: Mutex<BTreeMap<(String, &'static str), u64>>,
    /// outcome -> sign-ins
    sign_ins: Mutex<BTreeMap<&'static str, u64>>,
    /// (route, status) -> answers
    http: Mutex<BTreeMap<(String, u16), u64>>,
}

/// The deployment's state as the database has it at a scrape.
#[derive(Debug, Default)]
pub struct Gauges {
    /// kind -> (due now, overdue beyond `worker.overdue_after_secs`, failed at least once)
    pub jobs: BTreeMap<String, (i64, i64, i64)>,
    pub outbox_pending: i64,
    /// Seconds the oldest pending mail has waited (0 when none).
    pub outbox_oldest_secs: f64,
    pub active_grants: i64,
    pub pending_requests: i64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A label value as the format wants it.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    /// A revocation's delete was issued `secs` after the grant's end.
    pub fn revocation_issued(&self, secs: f64) {
        lock(&self.revocation_lateness).observe(secs.max(0.0));
    }

    /// A grant became active `secs` after its approval.
    pub fn grant_active(&self, secs: f64) {
        lock(&self.approval_to_grant).observe(secs.max(0.0));
    }

    /// One AWS call answered: `ok`, `throttled`, `conflict` or `error`.
    pub fn aws_call(&self, api: &str, outcome: &'static str) {
        *lock(&self.aws_calls)
            .entry((api.to_owned(), outcome))
            .or_default() += 1;
    }

    /// AWS calls answered since this process started, by (API, outcome).
    pub fn aws_calls(&self) -> BTreeMap<(String, &'static str), u64> {
        lock(&self.aws_calls).clone()
    }

    /// A sign-in ended: `ok`, `refused` (the provider or our checks said no) or `error`.
    pub fn sign_in(&self, outcome: &'static str) {
        *lock(&self.sign_ins).entry(outcome).or_default() += 1;
    }

    /// An HTTP answer, by the route that matched (never the raw path: bounded labels).
    pub fn http(&self, route: &str, status: u16) {
        *lock(&self.http)
            .entry((route.to_owned(), status))
            .or_default() += 1;
    }

    /// The text exposition format (version 0.0.4).
    pub fn render(&self, g: &Gauges) -> String {
        let mut out = String::new();
        let o = &mut out;
        let head = |o: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        head(
            o,
            "portcullis_revocation_lateness_seconds",
            "histogram",
            "Seconds from a grant's end to its deletion being issued to AWS.",
        );
        lock(&self.revocation_lateness).render(o, "portcullis_revocation_lateness_seconds");
        head(
            o,
            "portcullis_approval_to_grant_seconds",
            "histogram",
            "Seconds from a request's approval to its grant being active in AWS.",
        );
        lock(&self.approval_to_grant).render(o, "portcullis_approval_to_grant_seconds");
        head(
            o,
            "portcullis_aws_calls_total",
            "counter",
            "Calls to AWS by API and outcome (ok, throttled, conflict, error).",
        );
        for ((api, outcome), n) in lock(&self.aws_calls).iter() {
            let _ = writeln!(
                o,
                "portcullis_aws_calls_total{{api=\"{}\",outcome=\"{outcome}\"}} {n}",
                label(api)
            );
        }
        head(
            o,
            "portcullis_sign_ins_total",
            "counter",
            "Sign-ins by outcome (ok, refused, error).",
        );
        for (outcome, n) in lock(&self.sign_ins).iter() {
            let _ = writeln!(o, "portcullis_sign_ins_total{{outcome=\"{outcome}\"}} {n}");
        }
        head(
            o,
            "portcullis_http_requests_total",
            "counter",
            "HTTP answers by matched route and status.",
        );
        for ((route, status), n) in lock(&self.http).iter() {
            let _ = writeln!(
                o,
                "portcullis_http_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
                label(route)
            );
        }
        for (name, help, pick) in [
            (
                "portcullis_jobs_due",
                "Jobs whose time has come, by kind.",
                0usize,
            ),
            (
                "portcullis_jobs_overdue",
                "Jobs due for longer than worker.overdue_after_secs, by kind.",
                1,
            ),
            (
                "portcullis_jobs_failing",
                "Jobs that failed at least once and are waiting to retry, by kind.",
                2,
            ),
        ] {
            head(o, name, "gauge", help);
            for (kind, v) in &g.jobs {
                let n = [v.0, v.1, v.2][pick];
                let _ = writeln!(o, "{name}{{kind=\"{}\"}} {n}", label(kind));
            }
        }
        for (name, help, v) in [
            (
                "portcullis_outbox_pending",
                "Mail waiting to be sent.",
                g.outbox_pending as f64,
            ),
            (
                "portcullis_outbox_oldest_pending_seconds",
                "How long the oldest mail waiting to be sent has waited.",
                g.outbox_oldest_secs,
            ),
            (
                "portcullis_active_grants",
                "Grants active now.",
                g.active_grants as f64,
            ),
            (
                "portcullis_pending_requests",
                "Requests waiting for a decision.",
                g.pending_requests as f64,
            ),
        ] {
            head(o, name, "gauge", help);
            let _ = writeln!(o, "{name} {v}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_labels_escaped() {
        let m = Metrics::default();
        m.revocation_issued(0.05);
        m.revocation_issued(3.0);
        m.revocation_issued(4000.0);
        m.http("/a\"b", 200);
        let text = m.render(&Gauges::default());
        assert!(text.contains("portcullis_revocation_lateness_seconds_bucket{le=\"0.1\"} 1\n"));
        assert!(text.contains("portcullis_revocation_lateness_seconds_bucket{le=\"5.0\"} 2\n"));
        assert!(text.contains("portcullis_revocation_lateness_seconds_bucket{le=\"1800.0\"} 2\n"));
        assert!(text.contains("portcullis_revocation_lateness_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("portcullis_revocation_lateness_seconds_count 3\n"));
        assert!(text.contains("route=\"/a\\\"b\""));
    }
}
