//! Times as the reader lives them. The server writes every moment in UTC
//! (`2026-12-03 11:11:30 UTC`, [`crate::domain::Timestamp::format_utc`]); in the browser
//! [`When`] shows it in the reader's own time zone with how far it is from now ("in 1 h
//! 59 m", "3 min ago"), and keeps the UTC time on hover. Without WebAssembly it stays UTC.

use leptos::prelude::*;

/// One moment, written by the server in UTC.
#[component]
pub fn When(#[prop(into)] utc: String) -> impl IntoView {
    let (shown, set_shown) = signal(utc.clone());
    let datetime = parse_utc(&utc).map(iso);
    #[cfg(feature = "hydrate")]
    {
        let utc = utc.clone();
        Effect::new(move |_| {
            if let Some(ms) = parse_utc(&utc) {
                let now = js_sys::Date::now() as i64;
                set_shown.set(format!("{} ({})", local(ms), relative(ms - now)));
            }
        });
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = set_shown;
    view! {
        <time datetime=datetime title=utc data-testid="when">
            {shown}
        </time>
    }
}

/// Milliseconds since the epoch of `YYYY-MM-DD HH:MM:SS UTC`; `None` for anything else.
pub fn parse_utc(text: &str) -> Option<i64> {
    let text = text.strip_suffix(" UTC")?;
    let (date, time) = text.split_once(' ')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    Some((days_from_civil(y, m, day) * 86_400 + hh * 3600 + mm * 60 + ss) * 1000)
}

/// How far `delta_ms` (the moment minus now) is, in words: "in 1 h 59 m", "3 min ago",
/// "in 2 d 4 h", "just now".
#[cfg_attr(not(any(feature = "hydrate", test)), allow(dead_code))]
pub fn relative(delta_ms: i64) -> String {
    let secs = delta_ms.abs() / 1000;
    if secs < 45 {
        return "just now".into();
    }
    let mins = (secs + 30) / 60;
    let span = match mins {
        0..=59 => format!("{mins} min"),
        60..=1439 => match mins % 60 {
            0 => format!("{} h", mins / 60),
            m => format!("{} h {m} m", mins / 60),
        },
        _ => match (mins / 60) % 24 {
            0 => format!("{} d", mins / 1440),
            h => format!("{} d {h} h", mins / 1440),
        },
    };
    if delta_ms > 0 {
        format!("in {span}")
    } else {
        format!("{span} ago")
    }
}

/// `2026-12-03T11:11:30Z`, for `<time datetime>`.
fn iso(ms: i64) -> String {
    crate::domain::Timestamp::from_millis(ms).rfc3339()
}

/// The reader's local date and time, in their own locale's words.
#[cfg(feature = "hydrate")]
fn local(ms: i64) -> String {
    use leptos::wasm_bindgen::JsValue;
    let date = js_sys::Date::new(&JsValue::from_f64(ms as f64));
    let options = js_sys::Object::new();
    let _ = js_sys::Reflect::set(&options, &"dateStyle".into(), &"medium".into());
    let _ = js_sys::Reflect::set(&options, &"timeStyle".into(), &"short".into());
    String::from(date.to_locale_string("default", &options))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Timestamp;

    #[test]
    fn reads_back_what_the_server_writes() {
        for ms in [0, 1_796_292_691_000, 951_782_400_000, 4_102_444_799_000] {
            let text = Timestamp::from_millis(ms).format_utc();
            assert_eq!(parse_utc(&text), Some(ms), "{text}");
        }
        assert_eq!(
            iso(1_796_292_690_000),
            Timestamp::from_millis(1_796_292_690_000).rfc3339()
        );
        for bad in [
            "",
            "2026-12-03 11:11:30",
            "2026-13-03 11:11:30 UTC",
            "soon UTC",
            "2026-12-03 25:00:00 UTC",
        ] {
            assert_eq!(parse_utc(bad), None, "{bad}");
        }
    }

    #[test]
    fn says_how_far_in_words() {
        let min = 60_000;
        assert_eq!(relative(10_000), "just now");
        assert_eq!(relative(-3 * min), "3 min ago");
        assert_eq!(relative(119 * min), "in 1 h 59 m");
        assert_eq!(relative(120 * min), "in 2 h");
        assert_eq!(relative(-(52 * 60) * min), "2 d 4 h ago");
        assert_eq!(relative(3 * 24 * 60 * min), "in 3 d");
    }
}
