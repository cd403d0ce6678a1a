//! The admin dashboard (issue #14, item 5): requests per day by outcome, time to decision,
//! grants holding access, revocation lateness (30 days, by UTC day) and AWS calls that
//! failed or were throttled (since this replica started). Each chart comes with its
//! numbers; the page draws them as SVG and lists them in a table.

use super::*;

/// Days charted, today included.
pub const DAYS: i64 = 30;
const DAY_MS: i64 = 86_400_000;

impl PortalService {
    pub(super) async fn dashboard(&self, who: &Principal) -> Result<DashboardView, AppError> {
        let Admin(_) = self.admin(who, "dashboard").await?;
        let now = self.now();
        let today = now.millis().div_euclid(DAY_MS);
        let first = today - (DAYS - 1);
        let since = Timestamp::from_millis(first * DAY_MS);
        let days: Vec<i64> = (first..=today).collect();
        let labels: Vec<String> = days
            .iter()
            .map(|d| Timestamp::from_millis(d * DAY_MS).format_utc()[..10].to_owned())
            .collect();
        let mut conn = self.store.conn().await.or_internal()?;

        let counts = store::requests_per_day(&mut conn, since)
            .await
            .or_internal()?;
        let requests = requests_chart(&days, &labels, &counts);

        let delays = store::decision_delays(&mut conn, since)
            .await
            .or_internal()?;
        let minutes: Vec<(i64, f64)> = delays
            .iter()
            .map(|&(asked, decided)| (asked, (decided - asked).max(0) as f64 / 60_000.0))
            .collect();
        let decision = percentile_chart(
            ("decision-time", "Time to decision", "minutes"),
            &days,
            &labels,
            &minutes,
            "requests decided by a person",
        );

        // Each day's end, or now for today.
        let ends: Vec<i64> = days
            .iter()
            .map(|d| ((d + 1) * DAY_MS - 1).min(now.millis()))
            .collect();
        let spans = store::grant_spans(&mut conn, Timestamp::from_millis(ends[0]), now)
            .await
            .or_internal()?;
        let active = holding_at(&ends, &spans);
        let active_now = active.last().copied().unwrap_or_default();
        let grants = ChartView {
            id: "active-grants".into(),
            title: "Grants holding access".into(),
            summary: format!(
                "{active_now} now; at most {} at the end of a day in the last {DAYS} days.",
                active.iter().copied().fold(0.0, f64::max)
            ),
            unit: "grants".into(),
            label_name: "Day".into(),
            labels: labels.clone(),
            series: vec![SeriesView {
                name: "Holding access".into(),
                values: active,
            }],
            stacked: false,
        };

        let starts = store::revocation_starts(&mut conn, since)
            .await
            .or_internal()?;
        let late: Vec<(i64, f64)> = starts
            .iter()
            .map(|&(ends, began)| (began, (began - ends).max(0) as f64 / 1000.0))
            .collect();
        let lateness = percentile_chart(
            ("lateness", "Revocation lateness", "seconds"),
            &days,
            &labels,
            &late,
            "revocations begun",
        );
        let charts = vec![requests, decision, grants, lateness, self.aws_chart()];
        Ok(DashboardView { charts })
    }

    /// AWS calls that did not succeed, by API, since this process started.
    fn aws_chart(&self) -> ChartView {
        const OUTCOMES: [&str; 3] = ["throttled", "conflict", "error"];
        let calls = self.metrics.aws_calls();
        let apis: Vec<String> = calls
            .keys()
            .map(|(api, _)| api.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let total: u64 = calls.values().sum();
        let failed: u64 = calls
            .iter()
            .filter(|((_, o), _)| OUTCOMES.contains(o))
            .map(|(_, n)| n)
            .sum();
        let series = OUTCOMES
            .iter()
            .map(|&o| SeriesView {
                name: o.into(),
                values: apis
                    .iter()
                    .map(|api| calls.get(&(api.clone(), o)).copied().unwrap_or(0) as f64)
                    .collect(),
            })
            .collect();
        ChartView {
            id: "aws".into(),
            title: "AWS errors and throttles".into(),
            summary: format!(
                "{failed} of {total} AWS calls since this replica started were throttled, \
                 conflicted or failed."
            ),
            unit: "calls".into(),
            label_name: "API".into(),
            labels: apis,
            series,
            stacked: true,
        }
    }
}

/// Requests per day, stacked by what became of them.
fn requests_chart(days: &[i64], labels: &[String], counts: &[(i64, String, i64)]) -> ChartView {
    const OUTCOMES: [(&str, &[&str]); 4] = [
        ("Granted", &["approved", "active", "ended"]),
        ("Waiting", &["pending"]),
        ("Rejected", &["rejected"]),
        (
            "Timed out, cancelled or failed",
            &["timed_out", "cancelled", "failed"],
        ),
    ];
    let series: Vec<SeriesView> = OUTCOMES
        .iter()
        .map(|(name, statuses)| SeriesView {
            name: (*name).into(),
            values: days
                .iter()
                .map(|d| {
                    counts
                        .iter()
                        .filter(|(day, s, _)| day == d && statuses.contains(&s.as_str()))
                        .map(|(_, _, n)| *n as f64)
                        .sum()
                })
                .collect(),
        })
        .collect();
    let total: f64 = series.iter().flat_map(|s| &s.values).sum();
    let granted: f64 = series[0].values.iter().sum();
    ChartView {
        id: "requests".into(),
        title: "Requests per day".into(),
        summary: format!(
            "{total} requests in the last {DAYS} days; {granted} granted (or being granted)."
        ),
        unit: "requests".into(),
        label_name: "Day".into(),
        labels: labels.to_vec(),
        series,
        stacked: true,
    }
}

/// A median and 90th percentile per day of `(when, value)` samples.
fn percentile_chart(
    (id, title, unit): (&str, &str, &str),
    days: &[i64],
    labels: &[String],
    samples: &[(i64, f64)],
    what: &str,
) -> ChartView {
    let mut per_day: Vec<Vec<f64>> = vec![Vec::new(); days.len()];
    for &(at, v) in samples {
        let i = at.div_euclid(DAY_MS) - days[0];
        if let Some(day) = usize::try_from(i).ok().and_then(|i| per_day.get_mut(i)) {
            day.push(v);
        }
    }
    let mut all: Vec<f64> = samples.iter().map(|&(_, v)| v).collect();
    let series = [("p50", 0.5), ("p90", 0.9)]
        .iter()
        .map(|&(name, q)| SeriesView {
            name: name.into(),
            values: per_day
                .iter_mut()
                .map(|day| percentile(day, q).unwrap_or(0.0))
                .collect(),
        })
        .collect();
    let summary = match (percentile(&mut all, 0.5), percentile(&mut all, 0.9)) {
        (Some(p50), Some(p90)) => format!(
            "{} {what} in the last {DAYS} days: p50 {}, p90 {} {unit}.",
            all.len(),
            round(p50),
            round(p90)
        ),
        _ => format!("No {what} in the last {DAYS} days."),
    };
    ChartView {
        id: id.into(),
        title: title.into(),
        summary,
        unit: unit.into(),
        label_name: "Day".into(),
        labels: labels.to_vec(),
        series,
        stacked: false,
    }
}

/// The `q` quantile (nearest rank) of `values`; `None` when there are none.
pub(crate) fn percentile(values: &mut [f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    Some(values[rank - 1])
}

/// Two decimals at most, for sentences.
fn round(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// How many of `spans` (start, end) hold at each of `at`: started at or before it and
/// ending after it.
fn holding_at(at: &[i64], spans: &[(i64, i64)]) -> Vec<f64> {
    at.iter()
        .map(|&t| spans.iter().filter(|&&(s, e)| s <= t && e > t).count() as f64)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{holding_at, percentile};

    #[test]
    fn nearest_rank_percentiles() {
        let mut v = vec![5.0, 1.0, 3.0, 2.0, 4.0, 10.0, 6.0, 8.0, 7.0, 9.0];
        assert_eq!(percentile(&mut v, 0.5), Some(5.0));
        assert_eq!(percentile(&mut v, 0.9), Some(9.0));
        assert_eq!(percentile(&mut [42.0], 0.9), Some(42.0));
        assert_eq!(percentile(&mut [], 0.5), None);
    }

    #[test]
    fn holding_counts_spans_that_contain_each_instant() {
        let spans = [(0, 10), (5, 15), (10, 20)];
        // Started at or before, ending after: the end itself no longer holds.
        assert_eq!(
            holding_at(&[0, 5, 10, 15, 20], &spans),
            [1.0, 2.0, 2.0, 1.0, 0.0]
        );
    }
}
