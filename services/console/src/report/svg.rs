//! The report's charts as inline SVG, drawn on the server (pure string building): no script, no
//! CDN, and they print as they look. Every text is escaped.

use std::fmt::Write as _;

/// Colours of the series, in order (repeats after eight).
pub const PALETTE: [&str; 8] =
    ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563"];

const W: f64 = 720.0;
const LEFT: f64 = 48.0;
const RIGHT: f64 = 12.0;

/// Text safe inside SVG/HTML elements and attributes.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A vertical mark on a time chart: where (bucket index, may be fractional), its number (the
/// moments table says what it was), what (shown on hover), and a link.
#[derive(Debug, Clone, PartialEq)]
pub struct Mark {
    pub at: f64,
    pub number: usize,
    pub label: String,
    pub href: Option<String>,
}

/// The top of an axis of four steps that reaches `max`, each step a round number (1, 2, 5 × 10ⁿ,
/// at least 1: counts are whole).
fn nice(max: f64) -> f64 {
    let wanted = (max / 4.0).max(1.0);
    let magnitude = 10f64.powf(wanted.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|v| *v >= wanted)
        .unwrap_or(10.0 * magnitude);
    4.0 * step
}

fn open(out: &mut String, height: f64, title: &str) {
    open_w(out, W, height, title);
}

fn open_w(out: &mut String, width: f64, height: f64, title: &str) {
    let _ = write!(
        out,
        r#"<svg class="chart" viewBox="0 0 {width} {height}" width="100%" role="img" aria-label="{}" xmlns="http://www.w3.org/2000/svg">"#,
        esc(title)
    );
    let _ = write!(out, "<title>{}</title>", esc(title));
}

fn y_axis(out: &mut String, top: f64, bottom: f64, max: f64) {
    for i in 0..=4 {
        let v = max * f64::from(i) / 4.0;
        let y = bottom - (bottom - top) * f64::from(i) / 4.0;
        let _ = write!(
            out,
            r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#e5e7eb"/><text x="{}" y="{:.1}" font-size="10" text-anchor="end" fill="#6b7280">{}</text>"##,
            W - RIGHT,
            LEFT - 4.0,
            y + 3.0,
            v.round()
        );
    }
}

fn x_labels(out: &mut String, n: usize, bucket_s: f64, bottom: f64) {
    let plot = W - LEFT - RIGHT;
    let ticks = 6.min(n.max(1));
    for i in 0..=ticks {
        let frac = i as f64 / ticks as f64;
        let seconds = frac * n as f64 * bucket_s;
        // Minutes and seconds on a long axis, all ticks alike.
        let label = if n as f64 * bucket_s >= 120.0 {
            let whole = seconds.round() as i64;
            format!("{}:{:02}", whole / 60, whole % 60)
        } else {
            format!("{seconds:.0} s")
        };
        let _ = write!(
            out,
            r##"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="middle" fill="#6b7280">{label}</text>"##,
            LEFT + plot * frac,
            bottom + 14.0
        );
    }
}

/// Moments as dashed lines with a numbered badge on top; badges that would overlap step down a
/// row (four rows, then they overlap).
fn marks(out: &mut String, marks: &[Mark], n: usize, top: f64, bottom: f64) {
    let plot = W - LEFT - RIGHT;
    let mut rows: [f64; 4] = [f64::NEG_INFINITY; 4];
    for mark in marks {
        let x = LEFT + plot * (mark.at / n.max(1) as f64).clamp(0.0, 1.0);
        let row = rows.iter().position(|last| x - last >= 16.0).unwrap_or(3);
        rows[row] = x;
        let y = top + 8.0 + 16.0 * row as f64;
        let body = format!(
            r##"<title>{}</title><line x1="{x:.1}" x2="{x:.1}" y1="{y:.1}" y2="{bottom}" stroke="#111827" stroke-dasharray="3 3"/><circle cx="{x:.1}" cy="{y:.1}" r="7" fill="#111827"/><text x="{x:.1}" y="{:.1}" font-size="9" text-anchor="middle" fill="#fff">{}</text>"##,
            esc(&mark.label),
            y + 3.0,
            mark.number
        );
        match &mark.href {
            Some(href) => {
                let _ = write!(out, r#"<a href="{}" class="moment"><g>{body}</g></a>"#, esc(href));
            }
            None => {
                let _ = write!(out, "<g>{body}</g>");
            }
        }
    }
}

/// Orders per bucket as bars, with the moments marked.
pub fn orders_chart(orders: &[u64], bucket_ms: i64, moments: &[Mark]) -> String {
    let (height, top, bottom) = (220.0, 8.0, 196.0);
    let mut out = String::new();
    open(&mut out, height, "Orders over time");
    let max = nice(orders.iter().copied().max().unwrap_or(0) as f64);
    y_axis(&mut out, top, bottom, max);
    let n = orders.len().max(1);
    let step = (W - LEFT - RIGHT) / n as f64;
    for (i, count) in orders.iter().enumerate() {
        if *count == 0 {
            continue;
        }
        let h = (bottom - top) * *count as f64 / max;
        let _ = write!(
            out,
            r##"<rect x="{:.2}" y="{:.2}" width="{:.2}" height="{h:.2}" fill="#2563eb"><title>{count}</title></rect>"##,
            LEFT + step * i as f64,
            bottom - h,
            (step * 0.9).max(0.5)
        );
    }
    x_labels(&mut out, n, bucket_ms as f64 / 1000.0, bottom);
    marks(&mut out, moments, n, top, bottom);
    out.push_str("</svg>");
    out
}

/// Units left per SKU as step lines, with a legend and the moments marked.
pub fn stock_chart(lines: &[(String, Vec<i64>)], bucket_ms: i64, moments: &[Mark]) -> String {
    let legend_rows = lines.len().div_ceil(4);
    let (top, bottom) = (8.0, 196.0);
    let height = 220.0 + 16.0 * legend_rows as f64;
    let mut out = String::new();
    open(&mut out, height, "Stock left per SKU");
    let max = nice(lines.iter().flat_map(|(_, v)| v.iter().copied()).max().unwrap_or(0).max(0) as f64);
    y_axis(&mut out, top, bottom, max);
    let n = lines.iter().map(|(_, v)| v.len()).max().unwrap_or(0).max(1);
    let step = (W - LEFT - RIGHT) / n as f64;
    for (k, (sku, left)) in lines.iter().enumerate() {
        let colour = PALETTE[k % PALETTE.len()];
        let y = |v: i64| bottom - (bottom - top) * (v.max(0) as f64) / max;
        let mut path = String::new();
        for (i, v) in left.iter().enumerate() {
            let (x0, x1) = (LEFT + step * i as f64, LEFT + step * (i + 1) as f64);
            let _ =
                write!(path, "{}{x0:.2},{:.2} L{x1:.2},{:.2} ", if i == 0 { "M" } else { "L" }, y(*v), y(*v));
        }
        let _ = write!(
            out,
            r#"<path d="{}" fill="none" stroke="{colour}" stroke-width="2"><title>{}</title></path>"#,
            path.trim_end(),
            esc(sku)
        );
        let (lx, ly) =
            (LEFT + 170.0 * (k % 4) as f64, height - 8.0 - 16.0 * (legend_rows - 1 - k / 4) as f64);
        let _ = write!(
            out,
            r##"<rect x="{lx:.1}" y="{:.1}" width="10" height="10" fill="{colour}"/><text x="{:.1}" y="{ly:.1}" font-size="11" fill="#111827">{}</text>"##,
            ly - 9.0,
            lx + 14.0,
            esc(sku)
        );
    }
    x_labels(&mut out, n, bucket_ms as f64 / 1000.0, bottom);
    marks(&mut out, moments, n, top, bottom);
    out.push_str("</svg>");
    out
}

/// Horizontal bars with their values written beside them (a funnel's steps, revenue per SKU), in a
/// chart `width` units wide (720 for a full row, less for charts side by side: their text stays
/// readable).
pub fn hbars(title: &str, rows: &[(String, f64, String)], width: f64) -> String {
    let label_w = (width * 0.3).min(190.0);
    let bar_h = 20.0;
    let height = 8.0 + (bar_h + 6.0) * rows.len() as f64;
    let mut out = String::new();
    open_w(&mut out, width, height.max(30.0), title);
    let max = rows.iter().map(|(_, v, _)| *v).fold(0.0, f64::max).max(1.0);
    let plot = width - label_w - 110.0;
    for (i, (label, value, shown)) in rows.iter().enumerate() {
        let y = 4.0 + (bar_h + 6.0) * i as f64;
        let w = (plot * value / max).max(if *value > 0.0 { 1.0 } else { 0.0 });
        let _ = write!(
            out,
            r##"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="end" fill="#111827">{}</text><rect x="{label_w}" y="{y:.1}" width="{w:.1}" height="{bar_h}" fill="{}"/><text x="{:.1}" y="{:.1}" font-size="12" fill="#111827">{}</text>"##,
            label_w - 8.0,
            y + 14.0,
            esc(label),
            PALETTE[i % PALETTE.len()],
            label_w + w + 6.0,
            y + 14.0,
            esc(shown)
        );
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_charts_are_whole_svg() {
        assert_eq!(esc(r#"<b a="x">&'"#), "&lt;b a=&quot;x&quot;&gt;&amp;&#39;");
        let marks =
            [Mark { at: 1.0, number: 1, label: "<sold out>".into(), href: Some("/clips/a\"b/video".into()) }];
        for svg in [
            orders_chart(&[0, 3, 9, 1], 1_000, &marks),
            stock_chart(&[("TEE<".into(), vec![5, 3, 0, 0])], 1_000, &marks),
            hbars(
                "funnel",
                &[("lines <seen>".into(), 40.0, "40".into()), ("orders".into(), 0.0, "0".into())],
                360.0,
            ),
        ] {
            assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"), "{svg}");
            assert!(!svg.contains("<sold") && !svg.contains("TEE<") && !svg.contains("<seen"), "{svg}");
            assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        }
        assert!(orders_chart(&[], 1_000, &[]).ends_with("</svg>"), "an empty drop still draws");
    }

    #[test]
    fn axes_end_on_round_numbers() {
        assert_eq!(nice(0.0), 4.0);
        assert_eq!(nice(4.0), 4.0);
        assert_eq!(nice(7.0), 8.0);
        assert_eq!(nice(10.0), 20.0);
        assert_eq!(nice(480.0), 800.0);
        assert_eq!(nice(3_100.0), 4_000.0);
    }
}
