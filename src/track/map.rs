//! Map pictures (PNG): locations over the boundary, the class cells with their centroids,
//! and the test errors.
//!
//! Longitude is scaled by cos(mid latitude) so shapes are not stretched. Each map explains
//! itself: a title band (what drew it; [`retitle`] rewrites it with the experiment and run
//! id where those are known), a headline line of numbers, a legend naming every symbol
//! drawn, a scale bar in km, and on error maps the colour ramp with its km values. Land is
//! light grey; cells that are classes are outlined in dark blue and cells that are not in
//! light grey; geometric centroids are grey crosses, clipped centroids red dots, weighted
//! centroids blue dots; locations are small dots, green for train, orange for val, purple
//! for test. On error maps each test location is a dot at its true position joined by a
//! line to its prediction, both coloured from green (0 km) through yellow to red (at or
//! beyond the map's 90th-percentile error).

use std::path::Path;

use geo::{Coord, LineString, MultiPolygon};
use plotters::prelude::*;

use super::text::{GLYPH, draw_text, fit, for_each_pixel, text_width};

/// Colour of a location dot, by split index (train, val, test).
const SPLIT_COLOURS: [RGBColor; 3] = [
    RGBColor(46, 139, 87),
    RGBColor(255, 140, 0),
    RGBColor(128, 0, 128),
];
const LAND: RGBColor = RGBColor(225, 225, 225);
const COAST: RGBColor = RGBColor(120, 120, 120);
const CLASS_CELL: RGBColor = RGBColor(25, 25, 112);
const OTHER_CELL: RGBColor = RGBColor(190, 190, 190);
const WIDTH: u32 = 1200;

/// A point to draw, with its split index (0 train, 1 val, 2 test).
#[derive(Clone, Copy, Debug)]
pub struct MapPoint {
    /// Degrees north.
    pub lat: f64,
    /// Degrees east.
    pub lon: f64,
    /// 0 train, 1 val, 2 test.
    pub split: usize,
}

/// A cell to draw.
#[derive(Clone, Debug)]
pub struct MapCell {
    /// Its outline, (lon, lat), open.
    pub outline: Vec<(f64, f64)>,
    /// Whether it is a class.
    pub is_class: bool,
    /// Geometric centroid (lat, lon).
    pub geometric: (f64, f64),
    /// Clipped centroid (lat, lon).
    pub clipped: (f64, f64),
    /// Weighted centroid (lat, lon), when the cell has train locations.
    pub weighted: Option<(f64, f64)>,
}

/// A prediction to draw: the true position, the predicted one and the error.
#[derive(Clone, Copy, Debug)]
pub struct ErrorLine {
    /// True (lat, lon).
    pub truth: (f64, f64),
    /// Predicted (lat, lon).
    pub predicted: (f64, f64),
    /// Haversine error in km.
    pub error_km: f64,
}

/// The words on a map: what the caller knows and the map cannot work out itself.
#[derive(Clone, Debug, Default)]
pub struct MapText {
    /// Drawn in the title band, e.g. `Test errors · evaluate 299fa35aefac`.
    pub title: String,
    /// The headline numbers, one line under the title.
    pub headline: String,
}

/// Why a map could not be drawn.
#[derive(Debug, thiserror::Error)]
#[error("drawing {path}: {message}")]
pub struct MapError {
    path: String,
    message: String,
}

const MARGIN: i32 = 12;
/// Text scale of the title, headline and legend.
const SCALE: i32 = 2;
const LINE_H: i32 = GLYPH * SCALE;
/// Top of the title text; [`retitle`] repaints the band around it.
const TITLE_Y: i32 = MARGIN;
const HEADLINE_Y: i32 = TITLE_Y + LINE_H + 10;
const HEADER_H: i32 = HEADLINE_Y + LINE_H + MARGIN;
const LEGEND_ROW_H: i32 = LINE_H + 12;
const SWATCH: i32 = 18;
const INK: RGBColor = RGBColor(20, 20, 20);
const RAMP_W: i32 = 480;

/// Draws `points` over `land`.
///
/// # Errors
/// When the PNG cannot be written.
pub fn draw_locations(
    path: &Path,
    land: &MultiPolygon<f64>,
    points: &[MapPoint],
    text: &MapText,
) -> Result<(), MapError> {
    draw(path, land, &[], points, &[], text)
}

/// Draws each prediction's error over `land`.
///
/// # Errors
/// When the PNG cannot be written.
pub fn draw_errors(
    path: &Path,
    land: &MultiPolygon<f64>,
    errors: &[ErrorLine],
    text: &MapText,
) -> Result<(), MapError> {
    draw(path, land, &[], &[], errors, text)
}

/// Draws the class cells, their centroids and `points` over `land`.
///
/// # Errors
/// When the PNG cannot be written.
pub fn draw_classes(
    path: &Path,
    land: &MultiPolygon<f64>,
    cells: &[MapCell],
    points: &[MapPoint],
    text: &MapText,
) -> Result<(), MapError> {
    draw(path, land, cells, points, &[], text)
}

/// The title of a run's copy of a map: `golf · run f69ca77dd78d · evaluate 24835fc06250`.
pub fn run_title(experiment: &str, run_id: &str, stage: &str, key: &str) -> String {
    format!("{experiment} · run {run_id} · {stage} {key}")
}

/// A map PNG (as [`draw_locations`] and the others write it) with its title band
/// repainted to say `title`: how a run folder and a report name the experiment and run
/// that a shared cache entry's map cannot know.
///
/// # Errors
/// When `png` is not a PNG or cannot be re-encoded.
pub fn retitle(png: &[u8], title: &str) -> Result<Vec<u8>, MapError> {
    let fail = |e: &dyn std::fmt::Display| MapError {
        path: "(map in memory)".into(),
        message: e.to_string(),
    };
    let mut img = image::load_from_memory_with_format(png, image::ImageFormat::Png)
        .map_err(|e| fail(&e))?
        .to_rgb8();
    let (w, h) = img.dimensions();
    let band = (TITLE_Y - 4).max(0)..(TITLE_Y + LINE_H + 4);
    for y in band {
        let Ok(y) = u32::try_from(y) else { continue };
        for x in 0..w {
            if y < h {
                img.put_pixel(x, y, image::Rgb([255, 255, 255]));
            }
        }
    }
    let room = i32::try_from(w).unwrap_or(i32::MAX) - 2 * MARGIN;
    for_each_pixel(&fit(title, SCALE, room), MARGIN, TITLE_Y, SCALE, |x, y| {
        if let (Ok(x), Ok(y)) = (u32::try_from(x), u32::try_from(y))
            && x < w
            && y < h
        {
            img.put_pixel(x, y, image::Rgb([INK.0, INK.1, INK.2]));
        }
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .map_err(|e| fail(&e))?;
    Ok(out.into_inner())
}

/// Green → yellow → red as `t` goes 0 → 1.
fn heat(t: f64) -> RGBColor {
    let t = t.clamp(0.0, 1.0);
    let (r, g) = if t < 0.5 {
        (2.0 * t, 1.0)
    } else {
        (1.0, 2.0 * (1.0 - t))
    };
    RGBColor((r * 220.0) as u8, (g * 180.0) as u8, 40)
}

/// What a legend entry's swatch looks like.
#[derive(Clone, Copy, Debug)]
enum Swatch {
    Area(RGBColor, RGBColor),
    Outline(RGBColor),
    Dot(RGBColor, i32),
    Cross(RGBColor),
    Error(RGBColor),
}

/// The legend of what this map draws, in drawing order.
fn legend(
    land: &MultiPolygon<f64>,
    cells: &[MapCell],
    points: &[MapPoint],
    errors: &[ErrorLine],
) -> Vec<(Swatch, String)> {
    let mut out = Vec::new();
    if !land.0.is_empty() {
        out.push((Swatch::Area(LAND, COAST), "land".to_owned()));
    }
    let classes = cells.iter().filter(|c| c.is_class).count();
    if classes > 0 {
        out.push((
            Swatch::Outline(CLASS_CELL),
            format!("class cell ({classes})"),
        ));
    }
    if classes < cells.len() {
        let n = cells.len() - classes;
        out.push((Swatch::Outline(OTHER_CELL), format!("cell, no class ({n})")));
    }
    if !cells.is_empty() {
        out.push((Swatch::Cross(CENTROID), "geometric centroid".to_owned()));
        out.push((Swatch::Dot(RED, 4), "clipped centroid".to_owned()));
    }
    if cells.iter().any(|c| c.weighted.is_some()) {
        out.push((Swatch::Dot(BLUE, 4), "weighted centroid".to_owned()));
    }
    for (i, (colour, name)) in SPLIT_COLOURS.iter().zip(SPLITS).enumerate() {
        let n = points.iter().filter(|p| p.split == i).count();
        if n > 0 {
            out.push((Swatch::Dot(*colour, 3), format!("{name} ({n})")));
        }
    }
    if !errors.is_empty() {
        out.push((
            Swatch::Error(heat(0.25)),
            format!("true position -> prediction ({})", errors.len()),
        ));
    }
    out
}

const SPLITS: [&str; 3] = ["train", "val", "test"];
const CENTROID: RGBColor = RGBColor(90, 90, 90);

/// Places legend entries in rows across `width`: (row, x) of each.
fn legend_layout(entries: &[(Swatch, String)], width: i32) -> Vec<(i32, i32)> {
    let (mut row, mut x) = (0, MARGIN);
    entries
        .iter()
        .map(|(_, label)| {
            let w = SWATCH + 8 + text_width(label, SCALE) + 28;
            if x > MARGIN && x + w > width - MARGIN {
                row += 1;
                x = MARGIN;
            }
            let at = (row, x);
            x += w;
            at
        })
        .collect()
}

/// A round length for a scale bar about `target_km` long: 1, 2 or 5 × 10^k km.
fn nice_km(target_km: f64) -> f64 {
    if !(target_km.is_finite() && target_km > 0.0) {
        return 1.0;
    }
    let magnitude = 10f64.powf(target_km.log10().floor());
    [5.0, 2.0, 1.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|&v| v <= target_km)
        .unwrap_or(magnitude)
}

/// `0.5` → `"0.5"`, `20.0` → `"20"`: km labels without trailing zeros.
fn km_label(km: f64) -> String {
    let s = format!("{km:.1}");
    s.strip_suffix(".0").map(str::to_owned).unwrap_or(s)
}

fn draw(
    path: &Path,
    land: &MultiPolygon<f64>,
    cells: &[MapCell],
    points: &[MapPoint],
    errors: &[ErrorLine],
    text: &MapText,
) -> Result<(), MapError> {
    let fail = |e: &dyn std::fmt::Display| MapError {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let (mut x0, mut y0, mut x1, mut y1) = (
        f64::INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NEG_INFINITY,
    );
    let mut extend = |x: f64, y: f64| {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    };
    for c in land.0.iter().flat_map(|p| p.exterior().coords()) {
        extend(c.x, c.y);
    }
    for &(x, y) in cells.iter().flat_map(|c| &c.outline) {
        extend(x, y);
    }
    for p in points {
        extend(p.lon, p.lat);
    }
    for e in errors {
        extend(e.truth.1, e.truth.0);
        extend(e.predicted.1, e.predicted.0);
    }
    if !(x0.is_finite() && y0.is_finite()) {
        return Err(fail(&"nothing to draw"));
    }
    let pad = 0.02 * (x1 - x0).max(y1 - y0).max(1e-6);
    let (x0, x1, y0, y1) = (x0 - pad, x1 + pad, y0 - pad, y1 + pad);
    let mid_lat = (y0 + y1) / 2.0;
    let aspect = mid_lat.to_radians().cos().max(0.05);
    let width = i32::try_from(WIDTH).map_err(|e| fail(&e))?;
    let map_h =
        ((f64::from(WIDTH) * (y1 - y0) / ((x1 - x0) * aspect)).round() as i32).clamp(200, 4000);
    let entries = legend(land, cells, points, errors);
    let layout = legend_layout(&entries, width);
    let legend_rows = layout.last().map_or(0, |&(row, _)| row + 1);
    // Below the entries: the scale bar, and on error maps the colour ramp, with labels.
    let footer_h = MARGIN + legend_rows * LEGEND_ROW_H + LINE_H + 8 + LINE_H + MARGIN;
    let height = HEADER_H + map_h + footer_h;
    let size = (
        u32::try_from(width).map_err(|e| fail(&e))?,
        u32::try_from(height).map_err(|e| fail(&e))?,
    );

    let root = BitMapBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let room = width - 2 * MARGIN;
    draw_text(
        &root,
        &fit(&text.title, SCALE, room),
        (MARGIN, TITLE_Y),
        SCALE,
        &INK,
    );
    draw_text(
        &root,
        &fit(&text.headline, SCALE, room),
        (MARGIN, HEADLINE_Y),
        SCALE,
        &INK,
    );
    let (_, rest) = root.split_vertically(HEADER_H);
    let (map_area, footer) = rest.split_vertically(map_h);
    let mut chart = ChartBuilder::on(&map_area)
        .margin(10)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(|e| fail(&e))?;
    let ring = |ls: &LineString<f64>| {
        ls.coords()
            .map(|c: &Coord<f64>| (c.x, c.y))
            .collect::<Vec<_>>()
    };
    for poly in &land.0 {
        chart
            .draw_series(std::iter::once(Polygon::new(
                ring(poly.exterior()),
                LAND.filled(),
            )))
            .map_err(|e| fail(&e))?;
        for hole in poly.interiors() {
            chart
                .draw_series(std::iter::once(Polygon::new(ring(hole), WHITE.filled())))
                .map_err(|e| fail(&e))?;
        }
        chart
            .draw_series(std::iter::once(PathElement::new(
                ring(poly.exterior()),
                COAST,
            )))
            .map_err(|e| fail(&e))?;
    }
    for cell in cells {
        let mut outline = cell.outline.clone();
        if let Some(&first) = outline.first() {
            outline.push(first);
        }
        let colour = if cell.is_class {
            CLASS_CELL
        } else {
            OTHER_CELL
        };
        chart
            .draw_series(std::iter::once(PathElement::new(outline, colour)))
            .map_err(|e| fail(&e))?;
    }
    for (i, colour) in SPLIT_COLOURS.iter().enumerate() {
        chart
            .draw_series(
                points
                    .iter()
                    .filter(|p| p.split == i)
                    .map(|p| Circle::new((p.lon, p.lat), 1, colour.filled())),
            )
            .map_err(|e| fail(&e))?;
    }
    chart
        .draw_series(
            cells
                .iter()
                .map(|c| Cross::new((c.geometric.1, c.geometric.0), 4, CENTROID)),
        )
        .map_err(|e| fail(&e))?;
    chart
        .draw_series(
            cells
                .iter()
                .map(|c| Circle::new((c.clipped.1, c.clipped.0), 4, RED.filled())),
        )
        .map_err(|e| fail(&e))?;
    chart
        .draw_series(
            cells
                .iter()
                .filter_map(|c| c.weighted)
                .map(|(lat, lon)| Circle::new((lon, lat), 4, BLUE.filled())),
        )
        .map_err(|e| fail(&e))?;
    let scale = error_scale(errors);
    for e in errors {
        let colour = heat(e.error_km / scale);
        let (t, p) = ((e.truth.1, e.truth.0), (e.predicted.1, e.predicted.0));
        chart
            .draw_series(std::iter::once(PathElement::new(vec![t, p], colour)))
            .map_err(|e| fail(&e))?;
        chart
            .draw_series(std::iter::once(Circle::new(t, 2, colour.filled())))
            .map_err(|e| fail(&e))?;
    }
    // Pixels per km along the middle parallel, from the chart's own mapping.
    let (left, _) = chart.backend_coord(&(x0, mid_lat));
    let (right, _) = chart.backend_coord(&(x1, mid_lat));
    let span_km = (x1 - x0) * aspect * KM_PER_DEGREE;
    let px_per_km = f64::from(right - left) / span_km.max(1e-9);

    for ((swatch, label), &(row, x)) in entries.iter().zip(&layout) {
        let y = MARGIN + row * LEGEND_ROW_H;
        draw_swatch(&footer, *swatch, (x, y)).map_err(|e| fail(&e))?;
        draw_text(&footer, label, (x + SWATCH + 8, y + 1), SCALE, &INK);
    }
    let bar_y = MARGIN + legend_rows * LEGEND_ROW_H;
    let bar_km = nice_km(220.0 / px_per_km.max(1e-9));
    let bar_px = (bar_km * px_per_km).round() as i32;
    let (bx, by) = (MARGIN, bar_y + 4);
    footer
        .draw(&Rectangle::new(
            [(bx, by), (bx + bar_px, by + 6)],
            INK.filled(),
        ))
        .map_err(|e| fail(&e))?;
    footer
        .draw(&Rectangle::new(
            [(bx + bar_px / 2, by + 1), (bx + bar_px - 1, by + 5)],
            WHITE.filled(),
        ))
        .map_err(|e| fail(&e))?;
    let under = by + 6 + 6;
    draw_text(&footer, "0", (bx, under), SCALE, &INK);
    let end = format!("{} km", km_label(bar_km));
    draw_text(
        &footer,
        &end,
        (bx + bar_px - text_width(&end, SCALE) / 2, under),
        SCALE,
        &INK,
    );
    if !errors.is_empty() {
        let caption_x = bx + bar_px + 100;
        draw_text(&footer, "error", (caption_x, by - 4), SCALE, &INK);
        let rx = caption_x + text_width("error", SCALE) + 16;
        for i in 0..RAMP_W {
            let colour = heat(f64::from(i) / f64::from(RAMP_W - 1));
            footer
                .draw(&Rectangle::new(
                    [(rx + i, by - 2), (rx + i + 1, by + 8)],
                    colour.filled(),
                ))
                .map_err(|e| fail(&e))?;
        }
        draw_text(
            &footer,
            "(90th pct)",
            (rx + RAMP_W + 10, by - 4),
            SCALE,
            &INK,
        );
        let middle = format!("{} km", km_label(scale / 2.0));
        let end = format!(">= {} km", km_label(scale));
        draw_text(&footer, "0 km", (rx, under), SCALE, &INK);
        draw_text(
            &footer,
            &middle,
            (rx + (RAMP_W - text_width(&middle, SCALE)) / 2, under),
            SCALE,
            &INK,
        );
        draw_text(
            &footer,
            &end,
            (rx + RAMP_W - text_width(&end, SCALE), under),
            SCALE,
            &INK,
        );
    }
    root.present().map_err(|e| fail(&e))
}

/// Kilometres per degree of latitude (mean Earth radius 6371 km).
const KM_PER_DEGREE: f64 = 6371.0 * std::f64::consts::PI / 180.0;

/// The error at which the colour ramp reaches red: the 90th percentile.
fn error_scale(errors: &[ErrorLine]) -> f64 {
    let mut sorted: Vec<f64> = errors.iter().map(|e| e.error_km).collect();
    sorted.sort_by(f64::total_cmp);
    sorted
        .get(sorted.len() * 9 / 10)
        .copied()
        .unwrap_or(1.0)
        .max(1e-9)
}

fn draw_swatch<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    swatch: Swatch,
    (x, y): (i32, i32),
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let (cx, cy) = (x + SWATCH / 2, y + LINE_H / 2);
    let corners = [(x, y), (x + SWATCH, y + LINE_H)];
    match swatch {
        Swatch::Area(fill, edge) => {
            area.draw(&Rectangle::new(corners, fill.filled()))?;
            area.draw(&Rectangle::new(corners, edge))
        }
        Swatch::Outline(edge) => area.draw(&Rectangle::new(corners, edge.stroke_width(2))),
        Swatch::Dot(colour, r) => area.draw(&Circle::new((cx, cy), r, colour.filled())),
        Swatch::Cross(colour) => area.draw(&Cross::new((cx, cy), 4, colour)),
        Swatch::Error(colour) => {
            area.draw(&PathElement::new(
                vec![(x, cy + 4), (x + SWATCH, cy - 4)],
                colour,
            ))?;
            area.draw(&Circle::new((x, cy + 4), 2, colour.filled()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use geo::polygon;

    fn land() -> MultiPolygon<f64> {
        MultiPolygon(vec![
            polygon![(x: 13.0, y: 42.0), (x: 19.0, y: 42.0), (x: 19.0, y: 46.0), (x: 13.0, y: 46.0)],
        ])
    }

    fn text() -> MapText {
        MapText {
            title: "Test errors · evaluate 0123456789ab".into(),
            headline: "2 test locations, mean 55.0 km".into(),
        }
    }

    fn has_colour(img: &image::RgbImage, rows: std::ops::Range<u32>, c: RGBColor) -> bool {
        rows.flat_map(|y| (0..img.width()).map(move |x| (x, y)))
            .any(|(x, y)| img.get_pixel(x, y).0 == [c.0, c.1, c.2])
    }

    fn ink_rows(img: &image::RgbImage, rows: std::ops::Range<u32>) -> usize {
        rows.filter(|&y| (0..img.width()).any(|x| img.get_pixel(x, y).0 != [255, 255, 255]))
            .count()
    }

    #[test]
    fn a_locations_map_has_the_land_aspect_and_a_legend_of_its_splits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.png");
        let points = [
            MapPoint {
                lat: 45.0,
                lon: 15.0,
                split: 0,
            },
            MapPoint {
                lat: 43.0,
                lon: 17.0,
                split: 2,
            },
        ];
        draw_locations(&path, &land(), &points, &text()).unwrap();
        let img = image::open(&path).unwrap().to_rgb8();
        assert_eq!(img.width(), WIDTH);
        // 6° of longitude at 44° N span 4.3° of latitude's length; 4° tall: the map part is
        // 1200 × 4 / 4.3 ≈ 1100 px, plus the header and a one-row legend.
        let map_h = img.height() - HEADER_H as u32;
        assert!((1150..1300).contains(&map_h), "{}", img.height());
        let footer = img.height() - 110..img.height();
        assert!(
            has_colour(&img, footer.clone(), SPLIT_COLOURS[0]),
            "train swatch"
        );
        assert!(
            has_colour(&img, footer.clone(), SPLIT_COLOURS[2]),
            "test swatch"
        );
        assert!(
            !has_colour(&img, footer.clone(), SPLIT_COLOURS[1]),
            "no val, no val swatch"
        );
        assert!(has_colour(&img, footer, LAND), "land swatch");
        let (title, headline) = (TITLE_Y as u32, HEADLINE_Y as u32);
        assert!(
            ink_rows(&img, title..title + LINE_H as u32) > LINE_H as usize / 2,
            "title"
        );
        assert!(ink_rows(&img, headline..headline + LINE_H as u32) > LINE_H as usize / 2);
    }

    #[test]
    fn an_error_map_draws_its_ramp_and_retitling_changes_only_the_title_band() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.png");
        let errors = [
            ErrorLine {
                truth: (45.0, 15.0),
                predicted: (45.5, 15.5),
                error_km: 10.0,
            },
            ErrorLine {
                truth: (43.0, 17.0),
                predicted: (44.0, 17.0),
                error_km: 100.0,
            },
        ];
        draw_errors(&path, &land(), &errors, &text()).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let img = image::load_from_memory(&bytes).unwrap().to_rgb8();
        let footer = img.height() - 80..img.height();
        assert!(has_colour(&img, footer.clone(), heat(0.0)), "ramp start");
        assert!(has_colour(&img, footer, heat(1.0)), "ramp end");

        let again = retitle(&bytes, "golf · run f69ca77dd78d · evaluate 0123456789ab").unwrap();
        let new = image::load_from_memory(&again).unwrap().to_rgb8();
        assert_eq!(new.dimensions(), img.dimensions());
        let band = (TITLE_Y - 4) as u32..(TITLE_Y + LINE_H + 4) as u32;
        let differs = |y: u32| (0..img.width()).any(|x| img.get_pixel(x, y) != new.get_pixel(x, y));
        assert!(band.clone().any(differs), "the title changed");
        assert!(!(0..img.height()).filter(|y| !band.contains(y)).any(differs));
    }

    #[test]
    fn scale_bars_are_round_lengths() {
        assert_eq!(nice_km(73.0), 50.0);
        assert_eq!(nice_km(230.0), 200.0);
        assert_eq!(nice_km(0.7), 0.5);
        assert_eq!(nice_km(10.0), 10.0);
        assert_eq!(km_label(0.5), "0.5");
        assert_eq!(km_label(20.0), "20");
    }
}
