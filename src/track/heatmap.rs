//! A sweep's heatmap (PNG): one cell per pair of values of a two-axis grid, coloured by
//! the monitored metric, with its value written in the cell.
//!
//! Text is drawn with [`super::text`]'s bitmap font. Colours run from dark purple (worst) to yellow
//! (best) whichever way the metric improves; cells without a value are grey.

use std::path::Path;

use plotters::prelude::*;

use super::text::{GLYPH, draw_text, text_width};

const CELL_W: i32 = 110;
const CELL_H: i32 = 48;
const MARGIN: i32 = 16;
const EMPTY: RGBColor = RGBColor(200, 200, 200);
const INK: RGBColor = RGBColor(20, 20, 20);
/// Viridis at five stops, worst to best.
const STOPS: [(u8, u8, u8); 5] = [
    (68, 1, 84),
    (59, 82, 139),
    (33, 145, 140),
    (94, 201, 98),
    (253, 231, 37),
];

/// What to draw.
#[derive(Clone, Debug)]
pub struct Heatmap<'a> {
    /// The metric's name, drawn as the title.
    pub title: &'a str,
    /// The key along the x axis (columns).
    pub x_key: &'a str,
    /// Column labels.
    pub x_labels: Vec<String>,
    /// The key along the y axis (rows).
    pub y_key: &'a str,
    /// Row labels.
    pub y_labels: Vec<String>,
    /// `cells[row][column]`.
    pub cells: Vec<Vec<Option<f64>>>,
    /// Whether larger values are better (they get the brighter colour).
    pub higher_is_better: bool,
}

impl Heatmap<'_> {
    /// The colour of a cell holding `v`: viridis over the grid's range, brightest for the
    /// best value.
    pub fn colour_of(&self, v: f64) -> RGBColor {
        let values = self.cells.iter().flatten().flatten().copied();
        let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
            (a.min(x), b.max(x))
        });
        let t = if hi > lo { (v - lo) / (hi - lo) } else { 1.0 };
        colour(if self.higher_is_better { t } else { 1.0 - t })
    }
}

/// Why the heatmap could not be drawn.
#[derive(Debug, thiserror::Error)]
#[error("drawing {path}: {message}")]
pub struct HeatmapError {
    path: String,
    message: String,
}

/// Draws the heatmap to `path`.
///
/// # Errors
/// When the PNG cannot be written.
pub fn draw_heatmap(path: &Path, map: &Heatmap<'_>) -> Result<(), HeatmapError> {
    let fail = |e: &dyn std::fmt::Display| HeatmapError {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let label_w = map
        .y_labels
        .iter()
        .map(|l| text_width(l, 1))
        .max()
        .unwrap_or(0)
        .max(text_width(map.y_key, 1));
    let left = MARGIN + label_w + MARGIN;
    let top = MARGIN + 2 * GLYPH * 2 + MARGIN + GLYPH + MARGIN / 2;
    let cols = i32::try_from(map.x_labels.len()).map_err(|e| fail(&e))?;
    let rows = i32::try_from(map.y_labels.len()).map_err(|e| fail(&e))?;
    let width = (left + cols * CELL_W + MARGIN).max(MARGIN * 2 + text_width(map.title, 1) * 2);
    let height = top + rows * CELL_H + MARGIN;
    let size = (
        u32::try_from(width).map_err(|e| fail(&e))?,
        u32::try_from(height).map_err(|e| fail(&e))?,
    );
    let root = BitMapBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let text = |s: &str, x: i32, y: i32, scale: i32, colour: &RGBColor| {
        draw_text(&root, s, (x, y), scale, colour);
    };
    text(map.title, MARGIN, MARGIN, 2, &INK);
    let axis_y = MARGIN + 2 * GLYPH + MARGIN / 2;
    text(&format!("columns: {}", map.x_key), MARGIN, axis_y, 1, &INK);
    text(
        &format!("rows: {}", map.y_key),
        MARGIN,
        axis_y + GLYPH + 4,
        1,
        &INK,
    );
    for (c, label) in (0..).zip(&map.x_labels) {
        let x = left + c * CELL_W + (CELL_W - text_width(label, 1)) / 2;
        text(label, x, top - GLYPH - 6, 1, &INK);
    }
    for (r, label) in (0..).zip(&map.y_labels) {
        let y = top + r * CELL_H + (CELL_H - GLYPH) / 2;
        text(label, left - MARGIN - text_width(label, 1), y, 1, &INK);
        for (c, value) in (0..).zip(map.cells.get(r as usize).into_iter().flatten()) {
            let (x0, y0) = (left + c * CELL_W, top + r * CELL_H);
            let fill = value.map_or(EMPTY, |v| map.colour_of(v));
            root.draw(&Rectangle::new(
                [(x0 + 1, y0 + 1), (x0 + CELL_W - 1, y0 + CELL_H - 1)],
                fill.filled(),
            ))
            .map_err(|e| fail(&e))?;
            let shown = value.map_or_else(|| "-".to_owned(), format_value);
            let ink = if luminance(fill) > 140.0 { INK } else { WHITE };
            text(
                &shown,
                x0 + (CELL_W - text_width(&shown, 1)) / 2,
                y0 + (CELL_H - GLYPH) / 2,
                1,
                &ink,
            );
        }
    }
    root.present().map_err(|e| fail(&e))
}

/// Four significant digits, without an exponent for ordinary magnitudes.
pub fn format_value(v: f64) -> String {
    let magnitude = v.abs();
    if magnitude >= 1000.0 {
        format!("{v:.0}")
    } else if magnitude >= 100.0 {
        format!("{v:.1}")
    } else if magnitude >= 1.0 {
        format!("{v:.2}")
    } else if magnitude >= 0.001 || v == 0.0 {
        format!("{v:.4}")
    } else {
        format!("{v:.3e}")
    }
}

/// Viridis, `t` in 0..=1.
fn colour(t: f64) -> RGBColor {
    let t = t.clamp(0.0, 1.0) * (STOPS.len() - 1) as f64;
    let i = (t.floor() as usize).min(STOPS.len() - 2);
    let f = t - i as f64;
    let mix = |a: u8, b: u8| (f64::from(a) + (f64::from(b) - f64::from(a)) * f).round() as u8;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// Perceived brightness (ITU-R BT.601 weights), 0–255: whether text on `c` is dark or light.
pub fn luminance(c: RGBColor) -> f64 {
    0.299 * f64::from(c.0) + 0.587 * f64::from(c.1) + 0.114 * f64::from(c.2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_best_cell_is_yellow_whichever_way_the_metric_improves() {
        assert_eq!(colour(1.0), RGBColor(253, 231, 37));
        assert_eq!(colour(0.0), RGBColor(68, 1, 84));
        assert_eq!(colour(0.5), RGBColor(33, 145, 140));
    }

    #[test]
    fn values_are_printed_with_about_four_significant_digits() {
        assert_eq!(format_value(18.8765), "18.88");
        assert_eq!(format_value(123.456), "123.5");
        assert_eq!(format_value(0.77333), "0.7733");
        assert_eq!(format_value(4936.8), "4937");
    }

    #[test]
    fn a_heatmap_png_is_written_with_room_for_every_cell() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.png");
        draw_heatmap(
            &path,
            &Heatmap {
                title: "best_val/haversine_km_mean",
                x_key: "train.lr",
                x_labels: vec!["0.001".into(), "0.0003".into()],
                y_key: "classes.spacing",
                y_labels: vec!["0.5".into(), "0.7".into()],
                cells: vec![vec![Some(18.0), Some(25.0)], vec![Some(20.0), None]],
                higher_is_better: false,
            },
        )
        .unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        // Width and height from the IHDR chunk.
        let w = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
        let h = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
        assert!(w >= 2 * CELL_W as u32 && h >= 2 * CELL_H as u32, "{w}×{h}");
    }
}
