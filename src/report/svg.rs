//! Inline SVG charts for reports: line charts (training curves, rungs) and scatter plots
//! (a sweep's parameters against its metric), drawn with plain elements so they need no
//! script and no network to show.

use std::fmt::Write;

use super::html::escape;

const W: f64 = 460.0;
const H: f64 = 260.0;
const LEFT: f64 = 62.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 28.0;
const BOTTOM: f64 = 44.0;

/// Colours for series, in order (Okabe–Ito, readable with colour blindness).
pub const PALETTE: [&str; 7] = [
    "#0072b2", "#e69f00", "#009e73", "#cc79a7", "#d55e00", "#56b4e9", "#000000",
];

/// One line of a chart.
#[derive(Clone, Debug)]
pub struct Series {
    /// Its name in the legend.
    pub name: String,
    /// (x, y) points; non-finite ones are left out.
    pub points: Vec<(f64, f64)>,
    /// CSS colour.
    pub colour: String,
    /// Drawn thin and grey-ish (a trial successive halving stopped).
    pub faint: bool,
}

/// A line chart.
#[derive(Clone, Debug, Default)]
pub struct LineChart {
    /// Above the plot.
    pub title: String,
    /// Under the x axis.
    pub x_label: String,
    /// The lines.
    pub series: Vec<Series>,
    /// A logarithmic y axis (learning rates).
    pub log_y: bool,
    /// A dashed vertical line, with its label (the best epoch).
    pub marker: Option<(f64, String)>,
    /// Only these x values get ticks (whole epochs, rungs), when given.
    pub x_ticks: Option<Vec<f64>>,
}

/// A scatter plot of labelled points.
#[derive(Clone, Debug, Default)]
pub struct Scatter {
    /// Above the plot.
    pub title: String,
    /// Under the x axis.
    pub x_label: String,
    /// Beside the y axis.
    pub y_label: String,
    /// (x, y, tooltip).
    pub points: Vec<(f64, f64, String)>,
    /// A logarithmic x axis (learning rates).
    pub log_x: bool,
    /// Category names at x = 0, 1, 2, ... instead of numeric ticks.
    pub categories: Option<Vec<String>>,
    /// The best point's index, drawn larger.
    pub best: Option<usize>,
}

/// A linear or logarithmic mapping of data onto a pixel range.
#[derive(Clone, Copy, Debug)]
struct Axis {
    lo: f64,
    hi: f64,
    log: bool,
    from: f64,
    to: f64,
}

impl Axis {
    fn new(values: impl Iterator<Item = f64>, log: bool, (from, to): (f64, f64)) -> Axis {
        let t = |v: f64| if log { v.log10() } else { v };
        let (mut lo, mut hi) = values
            .filter(|v| v.is_finite() && (!log || *v > 0.0))
            .map(t)
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                (a.min(v), b.max(v))
            });
        if !lo.is_finite() {
            (lo, hi) = (0.0, 1.0);
        }
        if hi - lo < 1e-12 {
            let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.05 };
            (lo, hi) = (lo - pad, hi + pad);
        } else {
            let pad = (hi - lo) * 0.05;
            (lo, hi) = (lo - pad, hi + pad);
        }
        Axis {
            lo,
            hi,
            log,
            from,
            to,
        }
    }

    fn px(&self, v: f64) -> f64 {
        let v = if self.log { v.log10() } else { v };
        self.from + (v - self.lo) / (self.hi - self.lo) * (self.to - self.from)
    }

    /// About five round tick values inside the range.
    fn ticks(&self) -> Vec<f64> {
        if self.log {
            let (a, b) = (self.lo.ceil() as i32, self.hi.floor() as i32);
            let mut out: Vec<f64> = (a..=b).map(|e| 10f64.powi(e)).collect();
            if out.len() < 2 {
                out = (0..=4)
                    .map(|i| 10f64.powf(self.lo + (self.hi - self.lo) * f64::from(i) / 4.0))
                    .collect();
            }
            return out;
        }
        let step = nice_step((self.hi - self.lo) / 5.0);
        let mut v = (self.lo / step).ceil() * step;
        let mut out = Vec::new();
        while v <= self.hi + step * 1e-9 && out.len() < 12 {
            out.push(if v.abs() < step * 1e-9 { 0.0 } else { v });
            v += step;
        }
        out
    }
}

/// 1, 2 or 5 × 10^k, the nearest at or above `raw`.
fn nice_step(raw: f64) -> f64 {
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|&s| s >= raw * 0.999)
        .unwrap_or(10.0 * magnitude)
}

/// A tick label: short, no float noise.
pub fn tick_label(v: f64) -> String {
    let a = v.abs();
    if v == 0.0 {
        "0".into()
    } else if !(1e-3..1e5).contains(&a) {
        format!("{v:.0e}")
    } else {
        let s = format!("{v:.4}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        s.to_owned()
    }
}

fn open(out: &mut String, title: &str, class: &str) {
    let _ = write!(
        out,
        r#"<svg class="{class}" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" xmlns="http://www.w3.org/2000/svg"><title>{t}</title><text x="{LEFT}" y="18" class="chart-title">{t}</text>"#,
        t = escape(title)
    );
}

fn frame(out: &mut String, x: &Axis, y: &Axis, x_ticks: &[(f64, String)], x_label: &str) {
    let (x0, x1, y0, y1) = (LEFT, W - RIGHT, H - BOTTOM, TOP);
    let _ = write!(
        out,
        r##"<rect x="{x0}" y="{y1}" width="{}" height="{}" fill="none" stroke="#999"/>"##,
        x1 - x0,
        y0 - y1
    );
    for v in y.ticks() {
        let py = y.px(v);
        let _ = write!(
            out,
            r##"<line x1="{x0}" x2="{x1}" y1="{py:.1}" y2="{py:.1}" stroke="#eee"/><text x="{}" y="{:.1}" text-anchor="end" class="tick">{}</text>"##,
            x0 - 4.0,
            py + 4.0,
            tick_label(v)
        );
    }
    for (v, label) in x_ticks {
        let px = x.px(*v);
        let _ = write!(
            out,
            r##"<line x1="{px:.1}" x2="{px:.1}" y1="{y0}" y2="{}" stroke="#999"/><text x="{px:.1}" y="{}" text-anchor="middle" class="tick">{}</text>"##,
            y0 + 4.0,
            y0 + 16.0,
            escape(label)
        );
    }
    let _ = write!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle" class="axis-label">{}</text>"#,
        (x0 + x1) / 2.0,
        H - 8.0,
        escape(x_label)
    );
}

impl LineChart {
    /// The chart as an `<svg>` element.
    pub fn render(&self) -> String {
        let all = || self.series.iter().flat_map(|s| s.points.iter().copied());
        let x = Axis::new(all().map(|p| p.0), false, (LEFT, W - RIGHT));
        let y = Axis::new(all().map(|p| p.1), self.log_y, (H - BOTTOM, TOP));
        let mut out = String::new();
        open(&mut out, &self.title, "chart line-chart");
        let ticks: Vec<(f64, String)> = self
            .x_ticks
            .clone()
            .unwrap_or_else(|| x.ticks())
            .into_iter()
            .map(|v| (v, tick_label(v)))
            .collect();
        frame(&mut out, &x, &y, &ticks, &self.x_label);
        if let Some((at, label)) = &self.marker {
            let px = x.px(*at);
            let _ = write!(
                out,
                r##"<line x1="{px:.1}" x2="{px:.1}" y1="{TOP}" y2="{}" stroke="#555" stroke-dasharray="4 3"/><text x="{:.1}" y="{}" class="tick">{}</text>"##,
                H - BOTTOM,
                px + 3.0,
                H - BOTTOM - 4.0,
                escape(label)
            );
        }
        let mut legend_x = LEFT + 6.0;
        for s in &self.series {
            let pts: Vec<String> = s
                .points
                .iter()
                .filter(|(a, b)| a.is_finite() && b.is_finite() && (!self.log_y || *b > 0.0))
                .map(|&(a, b)| format!("{:.1},{:.1}", x.px(a), y.px(b)))
                .collect();
            let (width, opacity) = if s.faint { (1.0, 0.45) } else { (2.0, 1.0) };
            let _ = write!(
                out,
                r#"<polyline class="series" data-series="{name}" fill="none" stroke="{c}" stroke-width="{width}" stroke-opacity="{opacity}" points="{p}"><title>{name}</title></polyline>"#,
                name = escape(&s.name),
                c = escape(&s.colour),
                p = pts.join(" ")
            );
            if pts.len() == 1 {
                let (a, b) = pts[0].split_once(',').unwrap_or(("0", "0"));
                let _ = write!(
                    out,
                    r#"<circle cx="{a}" cy="{b}" r="3" fill="{}" fill-opacity="{opacity}"/>"#,
                    escape(&s.colour)
                );
            }
            if !s.faint && self.series.len() <= PALETTE.len() {
                let _ = write!(
                    out,
                    r#"<rect x="{legend_x:.1}" y="{}" width="10" height="3" fill="{c}"/><text x="{:.1}" y="{}" class="legend">{n}</text>"#,
                    TOP + 8.0,
                    legend_x + 14.0,
                    TOP + 12.0,
                    c = escape(&s.colour),
                    n = escape(&s.name)
                );
                legend_x += 22.0 + 6.5 * s.name.chars().count() as f64;
            }
        }
        out.push_str("</svg>");
        out
    }
}

impl Scatter {
    /// The plot as an `<svg>` element.
    pub fn render(&self) -> String {
        let x = Axis::new(
            self.points.iter().map(|p| p.0),
            self.log_x,
            (LEFT, W - RIGHT),
        );
        let y = Axis::new(self.points.iter().map(|p| p.1), false, (H - BOTTOM, TOP));
        let mut out = String::new();
        open(&mut out, &self.title, "chart scatter");
        let ticks: Vec<(f64, String)> = match &self.categories {
            Some(names) => (0..)
                .zip(names)
                .map(|(i, n)| (f64::from(i), n.clone()))
                .collect(),
            None => x.ticks().into_iter().map(|v| (v, tick_label(v))).collect(),
        };
        frame(&mut out, &x, &y, &ticks, &self.x_label);
        let _ = write!(
            out,
            r#"<text x="12" y="{}" transform="rotate(-90 12 {})" text-anchor="middle" class="axis-label">{}</text>"#,
            (TOP + H - BOTTOM) / 2.0,
            (TOP + H - BOTTOM) / 2.0,
            escape(&self.y_label)
        );
        for (i, (a, b, tip)) in self.points.iter().enumerate() {
            if !(a.is_finite() && b.is_finite()) || (self.log_x && *a <= 0.0) {
                continue;
            }
            let best = self.best == Some(i);
            let _ = write!(
                out,
                r#"<circle class="point" cx="{:.1}" cy="{:.1}" r="{}" fill="{}" fill-opacity="0.8"><title>{}</title></circle>"#,
                x.px(*a),
                y.px(*b),
                if best { 6 } else { 4 },
                if best { PALETTE[4] } else { PALETTE[0] },
                escape(tip)
            );
        }
        out.push_str("</svg>");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_inside_the_range() {
        let a = Axis::new([0.3, 17.2].into_iter(), false, (0.0, 100.0));
        let t = a.ticks();
        assert!(t.len() >= 3, "{t:?}");
        assert!(t.iter().all(|v| *v >= a.lo && *v <= a.hi));
        assert!(t.contains(&5.0) && t.contains(&10.0), "{t:?}");
        let log = Axis::new([1e-4, 1e-2].into_iter(), true, (0.0, 100.0));
        assert_eq!(log.ticks(), vec![1e-4, 1e-3, 1e-2]);
    }

    #[test]
    fn points_map_onto_the_plot_area() {
        let a = Axis::new([0.0, 10.0].into_iter(), false, (100.0, 200.0));
        assert!((a.px(5.0) - 150.0).abs() < 1e-9);
        assert!(a.px(0.0) > 100.0 && a.px(10.0) < 200.0);
    }

    #[test]
    fn labels_drop_float_noise() {
        assert_eq!(tick_label(0.30000000000000004), "0.3");
        assert_eq!(tick_label(20.0), "20");
        assert_eq!(tick_label(1e-4), "1e-4");
    }

    #[test]
    fn a_line_chart_names_its_series_and_escapes_text() {
        let svg = LineChart {
            title: "loss <train & val>".into(),
            x_label: "epoch".into(),
            series: vec![Series {
                name: "train/loss".into(),
                points: vec![(1.0, 2.0), (2.0, 1.0), (3.0, f64::NAN)],
                colour: PALETTE[0].into(),
                faint: false,
            }],
            ..LineChart::default()
        }
        .render();
        assert!(svg.contains("loss &lt;train &amp; val&gt;"));
        assert!(svg.contains(r#"data-series="train/loss""#));
        let points = svg
            .split("points=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert_eq!(points.split(' ').count(), 2, "the NaN point is left out");
    }
}
