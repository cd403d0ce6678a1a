//! The admin dashboard's charts: bar charts drawn as SVG on the server (readable without
//! JavaScript), each with an accessible title and summary and, behind it, a table of the
//! same numbers.

use super::widgets::ErrorBox;
use crate::api::load_dashboard;
use crate::error::AppError;
use crate::views::ChartView;
use leptos::prelude::*;

/// The drawing's size (the SVG scales to its box) and the plot area inside it.
const W: f64 = 640.0;
const H: f64 = 220.0;
const LEFT: f64 = 44.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 30.0;

/// The charts, for admins; nothing at all for anyone else (the page above already says
/// they may not see it).
#[component]
pub(super) fn Dashboard() -> impl IntoView {
    let data = Resource::new(|| (), |_| load_dashboard());
    view! {
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(d) => view! {
                        <section class="dashboard" aria-labelledby="dashboard-heading">
                            <h2 id="dashboard-heading">"The last 30 days"</h2>
                            <div class="charts">
                                {d.charts.into_iter().map(|c| view! { <Chart c /> }).collect_view()}
                            </div>
                        </section>
                    }
                    .into_any(),
                    Err(AppError::Forbidden(_)) => ().into_any(),
                    Err(e) => view! { <ErrorBox error=e /> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn Chart(c: ChartView) -> impl IntoView {
    let title_id = format!("chart-{}-title", c.id);
    let desc_id = format!("chart-{}-desc", c.id);
    let labelled_by = format!("{title_id} {desc_id}");
    let bars = bars(&c);
    let max = scale_max(&c);
    let ticks = x_ticks(&c);
    let legend: Vec<(usize, String)> = c
        .series
        .iter()
        .map(|s| s.name.clone())
        .enumerate()
        .collect();
    let (id, title, summary, unit) = (
        c.id.clone(),
        c.title.clone(),
        c.summary.clone(),
        c.unit.clone(),
    );
    view! {
        <figure class="card chart" data-testid="chart" data-chart=id>
            <figcaption>
                <strong>{title.clone()}</strong>
                <span class="muted" data-testid="chart-summary">" " {summary.clone()}</span>
            </figcaption>
            <svg
                viewBox=format!("0 0 {W} {H}")
                role="img"
                aria-labelledby=labelled_by
                preserveAspectRatio="none"
                class="bars"
            >
                <title id=title_id>{title}</title>
                <desc id=desc_id>{summary}</desc>
                <line class="axis" x1=LEFT y1=H - BOTTOM x2=W - RIGHT y2=H - BOTTOM />
                <text class="tick" x=LEFT - 4.0 y=TOP + 8.0 text-anchor="end">{fmt(max)}</text>
                <text class="tick" x=LEFT - 4.0 y=H - BOTTOM text-anchor="end">"0"</text>
                <text class="tick" x=4.0 y=H / 2.0>{unit.clone()}</text>
                {bars
                    .into_iter()
                    .map(|b| {
                        view! {
                            <rect class=format!("s{}", b.series) x=b.x y=b.y width=b.w height=b.h>
                                <title>{b.tip}</title>
                            </rect>
                        }
                    })
                    .collect_view()}
                {ticks
                    .into_iter()
                    .map(|(x, label)| view! {
                        <text class="tick" x=x y=H - BOTTOM + 16.0 text-anchor="middle">{label}</text>
                    })
                    .collect_view()}
            </svg>
            <ul class="legend">
                {legend
                    .into_iter()
                    .map(|(i, name)| view! {
                        <li><span class=format!("swatch s{i}") aria-hidden="true"></span>{name}</li>
                    })
                    .collect_view()}
            </ul>
            <details>
                <summary>"The numbers"</summary>
                <ChartTable c />
            </details>
        </figure>
    }
}

#[component]
fn ChartTable(c: ChartView) -> impl IntoView {
    let names: Vec<String> = c.series.iter().map(|s| s.name.clone()).collect();
    let rows: Vec<(String, Vec<(String, f64)>)> = c
        .labels
        .iter()
        .enumerate()
        .map(|(i, label)| {
            let cells = c
                .series
                .iter()
                .map(|s| (s.name.clone(), s.values.get(i).copied().unwrap_or(0.0)))
                .collect();
            (label.clone(), cells)
        })
        .collect();
    let label_name = c.label_name.clone();
    view! {
        <table data-testid="chart-table">
            <thead>
                <tr>
                    <th>{c.label_name}</th>
                    {names.into_iter().map(|n| view! { <th>{n}</th> }).collect_view()}
                </tr>
            </thead>
            <tbody>
                {rows
                    .into_iter()
                    .map(|(label, cells)| {
                        let label_name = label_name.clone();
                        let value = label.clone();
                        view! {
                            <tr data-testid="chart-row" data-label-value=value>
                                <td data-label=label_name>{label}</td>
                                {cells
                                    .into_iter()
                                    .map(|(name, v)| view! { <td data-label=name>{fmt(v)}</td> })
                                    .collect_view()}
                            </tr>
                        }
                    })
                    .collect_view()}
            </tbody>
        </table>
    }
}

struct Bar {
    series: usize,
    x: f64,
    y: f64,
    w: f64,
    h: f64,
    tip: String,
}

/// The top of the scale: the largest bar (a stack's total when stacked), rounded up.
fn scale_max(c: &ChartView) -> f64 {
    let top = (0..c.labels.len())
        .map(|i| {
            let at = c
                .series
                .iter()
                .map(|s| s.values.get(i).copied().unwrap_or(0.0));
            if c.stacked {
                at.sum()
            } else {
                at.fold(0.0, f64::max)
            }
        })
        .fold(0.0, f64::max);
    nice(top)
}

/// 1, 2 or 5 times a power of ten, at least `v` (and at least 1).
fn nice(v: f64) -> f64 {
    if v <= 1.0 {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|&n| n >= v)
        .unwrap_or(10.0 * p)
}

fn bars(c: &ChartView) -> Vec<Bar> {
    let n = c.labels.len().max(1) as f64;
    let band = (W - LEFT - RIGHT) / n;
    let plot = H - TOP - BOTTOM;
    let max = scale_max(c);
    let k = c.series.len().max(1) as f64;
    let mut out = Vec::new();
    for (i, label) in c.labels.iter().enumerate() {
        let x0 = LEFT + band * i as f64 + band * 0.1;
        let width = band * 0.8;
        let mut base = H - BOTTOM;
        for (j, s) in c.series.iter().enumerate() {
            let v = s.values.get(i).copied().unwrap_or(0.0);
            if v <= 0.0 {
                continue;
            }
            let h = v / max * plot;
            let tip = format!("{label}, {}: {} {}", s.name, fmt(v), c.unit);
            if c.stacked {
                base -= h;
                out.push(Bar {
                    series: j,
                    x: x0,
                    y: base,
                    w: width,
                    h,
                    tip,
                });
            } else {
                let w = width / k;
                out.push(Bar {
                    series: j,
                    x: x0 + w * j as f64,
                    y: H - BOTTOM - h,
                    w,
                    h,
                    tip,
                });
            }
        }
    }
    out
}

/// At most eight labels under the bars, evenly spread, the last one always shown.
fn x_ticks(c: &ChartView) -> Vec<(f64, String)> {
    let n = c.labels.len();
    let band = (W - LEFT - RIGHT) / n.max(1) as f64;
    let every = n.div_ceil(8).max(1);
    c.labels
        .iter()
        .enumerate()
        .filter(|(i, _)| (n - 1 - i).is_multiple_of(every))
        .map(|(i, l)| {
            // Days read as "12-03"; other labels as they are.
            let short = if l.len() == 10 && l.as_bytes()[4] == b'-' {
                l[5..].to_owned()
            } else {
                l.clone()
            };
            (LEFT + band * (i as f64 + 0.5), short)
        })
        .collect()
}

/// Whole numbers plain, others with at most two decimals.
fn fmt(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{:.2}", v)
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::views::SeriesView;

    fn chart(stacked: bool) -> ChartView {
        ChartView {
            id: "t".into(),
            title: "T".into(),
            summary: String::new(),
            unit: "requests".into(),
            label_name: "Day".into(),
            labels: vec!["2026-12-01".into(), "2026-12-02".into()],
            series: vec![
                SeriesView {
                    name: "a".into(),
                    values: vec![3.0, 0.0],
                },
                SeriesView {
                    name: "b".into(),
                    values: vec![4.0, 1.0],
                },
            ],
            stacked,
        }
    }

    #[test]
    fn bars_stand_on_the_axis_and_scale_to_the_largest() {
        let stacked = chart(true);
        assert_eq!(scale_max(&stacked), 10.0);
        let b = bars(&stacked);
        // No bar for a zero; a stack's parts touch; all end at the axis or above.
        assert_eq!(b.len(), 3);
        assert!((b[0].y + b[0].h - (H - BOTTOM)).abs() < 1e-9);
        assert!((b[1].y + b[1].h - b[0].y).abs() < 1e-9);
        assert!((b[0].h / b[1].h - 3.0 / 4.0).abs() < 1e-9);
        assert_eq!(b[1].tip, "2026-12-01, b: 4 requests");
        let side = chart(false);
        assert_eq!(scale_max(&side), 5.0);
        assert!(bars(&side)
            .iter()
            .all(|b| (b.y + b.h - (H - BOTTOM)).abs() < 1e-9));
        assert_eq!(x_ticks(&side).last().unwrap().1, "12-02");
        assert_eq!(
            (nice(0.0), nice(7.0), nice(12.0), nice(300.0)),
            (1.0, 10.0, 20.0, 500.0)
        );
        assert_eq!(
            (fmt(3.0), fmt(2.5), fmt(1.239)),
            ("3".into(), "2.5".into(), "1.24".into())
        );
    }
}
