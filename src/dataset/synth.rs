//! A synthetic dataset in the real layout, whose pictures say where they were taken.
//!
//! Locations lie on land inside the boundary with uneven density: most cluster around
//! "towns" (heavier-tailed sizes, fewer in high terrain), some follow "roads" between
//! neighbouring towns, a few are scattered, and high terrain thins them out — like
//! street-view coverage. A smooth seeded elevation field stands for mountains.
//!
//! Each of the four views (headings 0, 90, 180, 270) is painted from smooth functions of
//! the location, so a CNN can learn position from pixels:
//! - sky colour drifts with latitude;
//! - the ground palette mixes fields (east), forest (high terrain) and karst (south-west);
//! - field stripes get denser eastwards;
//! - the horizon rises and grows ridges with elevation;
//! - within 30 km of the sea, views facing it show water, more the closer it is;
//! - houses are frequent near towns, with red roofs in the south and brown in the north;
//! - lighting depends on the heading (sun in the south-east), plus per-pixel noise.
//!
//! Everything is derived from the seed: the location sample from one generator, each
//! location's pixels from a generator seeded by (seed, index), so parallel rendering is
//! deterministic.

use std::f64::consts::PI;
use std::fs;
use std::io::{BufWriter, Write};
use std::path::Path;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::error::DatasetError;
use super::layout::CSV_NAME;
use crate::geo::{BBox, Boundary, EARTH_RADIUS_KM, haversine_km};
use crate::graph::Tick;
use crate::vocab::HEADINGS;

/// What to generate.
#[derive(Clone, Debug, PartialEq)]
pub struct SynthOptions {
    /// Number of locations.
    pub locations: usize,
    /// Side of each square view in pixels.
    pub image_size: u32,
    /// Seed.
    pub seed: u64,
}

/// What was generated.
#[derive(Clone, Debug, PartialEq)]
pub struct SynthSummary {
    /// Locations written.
    pub locations: usize,
    /// Images written.
    pub images: usize,
}

const SEA_VISIBLE_KM: f64 = 30.0;
const JPEG_QUALITY: u8 = 90;

/// Generates a dataset into `out` (created; must not exist or be empty).
///
/// # Errors
/// When files cannot be written or the boundary has (almost) no land to sample.
pub fn generate(
    boundary: &Boundary,
    options: &SynthOptions,
    out: &Path,
    tick: &dyn Tick,
) -> Result<SynthSummary, DatasetError> {
    let world = World::new(boundary, options.seed)?;
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    let mut sites = Vec::with_capacity(options.locations);
    for _ in 0..options.locations {
        let (lat, lon) = world.sample_location(&mut rng)?;
        let mut bytes = [0u8; 16];
        rng.fill(&mut bytes);
        let uuid = uuid::Builder::from_random_bytes(bytes)
            .into_uuid()
            .to_string();
        sites.push((uuid, lat, lon));
    }
    let images = out.join("images");
    fs::create_dir_all(&images).map_err(DatasetError::io("creating", &images))?;
    sites
        .par_iter()
        .enumerate()
        .try_for_each(|(i, (uuid, lat, lon))| {
            let dir = images.join(uuid);
            fs::create_dir_all(&dir).map_err(DatasetError::io("creating", &dir))?;
            let mut rng = ChaCha8Rng::seed_from_u64(
                options.seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            );
            let site = world.describe(*lat, *lon, &mut rng);
            for heading in HEADINGS {
                let pixels = paint(&site, heading, options.image_size, &mut rng);
                let path = dir.join(format!("{heading}.jpg"));
                write_jpeg(&path, &pixels, options.image_size)?;
            }
            tick.inc(1);
            Ok::<(), DatasetError>(())
        })?;
    let csv = out.join(CSV_NAME);
    let file = fs::File::create(&csv).map_err(DatasetError::io("writing", &csv))?;
    let mut w = BufWriter::new(file);
    // The first of the real header shapes: a pandas index column, then the three we need.
    let mut text = String::from(",uuid,latitude,longitude\n");
    for (i, (uuid, lat, lon)) in sites.iter().enumerate() {
        text.push_str(&format!("{i},{uuid},{lat},{lon}\n"));
    }
    w.write_all(text.as_bytes())
        .and_then(|()| w.flush())
        .map_err(DatasetError::io("writing", &csv))?;
    Ok(SynthSummary {
        locations: sites.len(),
        images: sites.len() * HEADINGS.len(),
    })
}

/// The seeded landscape: elevation bumps, towns, roads, coastline.
struct World<'b> {
    boundary: &'b Boundary,
    bbox: BBox,
    kx: f64,
    mountains: Vec<Bump>,
    towns: Vec<Town>,
    roads: Vec<(usize, usize)>,
    coast: Vec<[(f64, f64); 2]>,
}

struct Bump {
    lat: f64,
    lon: f64,
    height: f64,
    sigma: f64,
}

struct Town {
    lat: f64,
    lon: f64,
    weight: f64,
    spread_km: f64,
}

/// Everything a location's pictures depend on.
struct Site {
    lat_n: f64,
    lon_n: f64,
    elevation: f64,
    coast_km: f64,
    sea_bearing: f64,
    town_km: f64,
    road_heading: u16,
}

impl<'b> World<'b> {
    fn new(boundary: &'b Boundary, seed: u64) -> Result<World<'b>, DatasetError> {
        let bbox = boundary.bbox();
        let kx = boundary.local_x_scale();
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x005E_ED0F_1A4D);
        let mut world = World {
            boundary,
            bbox,
            kx,
            mountains: Vec::new(),
            towns: Vec::new(),
            roads: Vec::new(),
            coast: boundary.sea_edges(),
        };
        let span = (bbox.max_lat - bbox.min_lat).max((bbox.max_lon - bbox.min_lon) * kx);
        for _ in 0..7 {
            let (lat, lon) = world.uniform_on_land(&mut rng)?;
            world.mountains.push(Bump {
                lat,
                lon,
                height: rng.random_range(0.5..1.2),
                sigma: span * rng.random_range(0.06..0.16),
            });
        }
        let n_towns = 40;
        while world.towns.len() < n_towns {
            let (lat, lon) = world.uniform_on_land(&mut rng)?;
            // Towns avoid high ground.
            if rng.random::<f64>() < 0.85 * world.elevation(lat, lon) {
                continue;
            }
            let u: f64 = rng.random_range(0.02..1.0);
            world.towns.push(Town {
                lat,
                lon,
                weight: u.powf(-1.1),
                spread_km: rng.random_range(3.0..12.0),
            });
        }
        for i in 0..world.towns.len() {
            let mut near: Vec<(f64, usize)> = (0..world.towns.len())
                .filter(|&j| j != i)
                .map(|j| {
                    (
                        haversine_km(
                            world.towns[i].lat,
                            world.towns[i].lon,
                            world.towns[j].lat,
                            world.towns[j].lon,
                        ),
                        j,
                    )
                })
                .collect();
            near.sort_by(|a, b| a.0.total_cmp(&b.0));
            for (_, j) in near.into_iter().take(2) {
                if !world.roads.contains(&(j, i)) {
                    world.roads.push((i, j));
                }
            }
        }
        Ok(world)
    }

    fn elevation(&self, lat: f64, lon: f64) -> f64 {
        let raw: f64 = self
            .mountains
            .iter()
            .map(|m| {
                let d2 = ((lon - m.lon) * self.kx).powi(2) + (lat - m.lat).powi(2);
                m.height * (-d2 / (2.0 * m.sigma * m.sigma)).exp()
            })
            .sum();
        1.0 - (-1.6 * raw).exp()
    }

    fn uniform_on_land(&self, rng: &mut ChaCha8Rng) -> Result<(f64, f64), DatasetError> {
        for _ in 0..100_000 {
            let lat = rng.random_range(self.bbox.min_lat..=self.bbox.max_lat);
            let lon = rng.random_range(self.bbox.min_lon..=self.bbox.max_lon);
            if self.boundary.contains(lat, lon) {
                return Ok((lat, lon));
            }
        }
        Err(DatasetError::Other(format!(
            "boundary {} has too little land to sample locations from",
            self.boundary.name()
        )))
    }

    fn offset(&self, lat: f64, lon: f64, north_km: f64, east_km: f64) -> (f64, f64) {
        let deg = |km: f64| (km / EARTH_RADIUS_KM).to_degrees();
        (lat + deg(north_km), lon + deg(east_km) / self.kx)
    }

    fn sample_location(&self, rng: &mut ChaCha8Rng) -> Result<(f64, f64), DatasetError> {
        let total: f64 = self.towns.iter().map(|t| t.weight).sum();
        for _ in 0..10_000 {
            let kind: f64 = rng.random();
            let (lat, lon) = if kind < 0.6 {
                let mut pick = rng.random::<f64>() * total;
                let town = self
                    .towns
                    .iter()
                    .find(|t| {
                        pick -= t.weight;
                        pick <= 0.0
                    })
                    .unwrap_or(&self.towns[0]);
                let (n, e) = gaussian_pair(rng);
                self.offset(town.lat, town.lon, n * town.spread_km, e * town.spread_km)
            } else if kind < 0.88 && !self.roads.is_empty() {
                let (a, b) = self.roads[rng.random_range(0..self.roads.len())];
                let t: f64 = rng.random();
                let (ta, tb) = (&self.towns[a], &self.towns[b]);
                let (n, e) = gaussian_pair(rng);
                let lat = ta.lat + t * (tb.lat - ta.lat);
                let lon = ta.lon + t * (tb.lon - ta.lon);
                self.offset(lat, lon, n * 1.5, e * 1.5)
            } else {
                self.uniform_on_land(rng)?
            };
            if !self.boundary.contains(lat, lon) {
                continue;
            }
            if rng.random::<f64>() < 0.75 * self.elevation(lat, lon) {
                continue;
            }
            return Ok((lat, lon));
        }
        self.uniform_on_land(rng)
    }

    fn describe(&self, lat: f64, lon: f64, rng: &mut ChaCha8Rng) -> Site {
        let b = &self.bbox;
        let (coast_km, sea_bearing) = match self.boundary.nearest_on_edges(&self.coast, lat, lon) {
            Some((km, q)) => {
                let (east, north) = ((q.lon - lon) * self.kx, q.lat - lat);
                (km, east.atan2(north).to_degrees().rem_euclid(360.0))
            }
            None => (f64::INFINITY, 0.0),
        };
        let town_km = self
            .towns
            .iter()
            .map(|t| haversine_km(lat, lon, t.lat, t.lon))
            .fold(f64::INFINITY, f64::min);
        Site {
            lat_n: ((lat - b.min_lat) / (b.max_lat - b.min_lat).max(1e-9)).clamp(0.0, 1.0),
            lon_n: ((lon - b.min_lon) / (b.max_lon - b.min_lon).max(1e-9)).clamp(0.0, 1.0),
            elevation: self.elevation(lat, lon),
            coast_km,
            sea_bearing,
            town_km,
            road_heading: if rng.random::<bool>() { 0 } else { 90 },
        }
    }
}

fn gaussian_pair(rng: &mut ChaCha8Rng) -> (f64, f64) {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    let r = (-2.0 * u1.ln()).sqrt();
    (r * (2.0 * PI * u2).cos(), r * (2.0 * PI * u2).sin())
}

fn mix(a: [f64; 3], b: [f64; 3], t: f64) -> [f64; 3] {
    [
        a[0] + (b[0] - a[0]) * t,
        a[1] + (b[1] - a[1]) * t,
        a[2] + (b[2] - a[2]) * t,
    ]
}

/// Paints one view as RGB bytes.
fn paint(site: &Site, heading: u16, size: u32, rng: &mut ChaCha8Rng) -> Vec<u8> {
    let s = f64::from(size);
    let h = f64::from(heading);
    let (lat_n, lon_n, e) = (site.lat_n, site.lon_n, site.elevation);

    let sky_top = [
        60.0 + 90.0 * lat_n,
        110.0 + 70.0 * lat_n,
        235.0 - 45.0 * lat_n,
    ];
    let sky_low = mix(sky_top, [235.0, 235.0, 225.0], 0.55);

    let w_fields = lon_n.powf(1.5) * (1.0 - e);
    let w_forest = e.powf(0.8);
    let w_karst = (1.0 - lat_n).powf(1.5) * (1.0 - lon_n) * (1.0 - e);
    let w_total = (w_fields + w_forest + w_karst + 0.15).max(1e-9);
    let palette = [
        ([175.0, 165.0, 70.0], w_fields),
        ([45.0, 90.0, 45.0], w_forest),
        ([170.0, 165.0, 150.0], w_karst),
        ([95.0, 130.0, 60.0], 0.15),
    ];
    let ground = palette.iter().fold([0.0; 3], |acc, (c, w)| {
        [
            acc[0] + c[0] * w / w_total,
            acc[1] + c[1] * w / w_total,
            acc[2] + c[2] * w / w_total,
        ]
    });

    let angle = (h - site.sea_bearing + 180.0).rem_euclid(360.0) - 180.0;
    let sea_frac = if site.coast_km < SEA_VISIBLE_KM && angle.abs() < 75.0 {
        (1.0 - site.coast_km / SEA_VISIBLE_KM) * angle.to_radians().cos()
    } else {
        0.0
    };
    let horizon = s * (0.55 - 0.22 * e);
    let ridge_amp = s * 0.2 * e * (1.0 - sea_frac);
    let ridge_freq = 1.5 + 2.5 * lon_n;
    let ridge_phase = h / 90.0 * 1.3 + lat_n * 9.0 + lon_n * 5.0;
    let stripe_freq = 3.0 + 12.0 * lon_n;
    let stripe_amp = 30.0 * w_fields / w_total;
    let sea_rows = s * 0.35 * sea_frac;
    let light = 0.82 + 0.18 * (h - 135.0).to_radians().cos();

    let mut img = vec![[0.0f64; 3]; (size * size) as usize];
    let skyline: Vec<f64> = (0..size)
        .map(|x| {
            let fx = f64::from(x) + 0.5;
            horizon - ridge_amp * (0.5 + 0.5 * (2.0 * PI * fx / s * ridge_freq + ridge_phase).sin())
        })
        .collect();
    for y in 0..size {
        let fy = f64::from(y) + 0.5;
        for x in 0..size {
            let fx = f64::from(x) + 0.5;
            let line = skyline[x as usize];
            let px = if fy < line {
                mix(sky_top, sky_low, (fy / line.max(1.0)).clamp(0.0, 1.0))
            } else if sea_frac > 0.0 && fy >= horizon && fy < horizon + sea_rows {
                let wave = 8.0 * (fy * 0.9 + fx * 0.2).sin();
                [30.0 + wave, 90.0 + wave, 155.0 + wave]
            } else {
                let depth = (fy - line) / (s - line).max(1.0);
                let stripe = stripe_amp
                    * (2.0 * PI * (stripe_freq * depth + 0.15 * fx / s * (h / 90.0 + 1.0))).sin();
                let shade = 0.75 + 0.35 * depth;
                [
                    (ground[0] + stripe) * shade,
                    (ground[1] + stripe) * shade,
                    (ground[2] + stripe * 0.3) * shade,
                ]
            };
            img[(y * size + x) as usize] = px;
        }
    }

    // Houses near towns; roof colour follows latitude.
    let roof = mix([185.0, 65.0, 45.0], [105.0, 60.0, 40.0], lat_n);
    let n_houses = (7.0 * (-site.town_km / 6.0).exp() + rng.random::<f64>()).floor() as usize;
    for _ in 0..n_houses {
        let w = (s * rng.random_range(0.06..0.12)).max(2.0);
        let x0 = rng.random_range(0.0..(s - w).max(1.0));
        let y0 = (horizon + rng.random_range(0.0..0.15) * s).min(s - w);
        fill_rect(&mut img, size, x0, y0, w, w * 0.7, [225.0, 215.0, 195.0]);
        fill_rect(&mut img, size, x0, y0 - w * 0.35, w, w * 0.35, roof);
    }

    // A road runs along one axis near towns: seen ahead in two opposite views.
    if site.town_km < 20.0 && (heading == site.road_heading || heading == site.road_heading + 180) {
        for y in 0..size {
            let fy = f64::from(y) + 0.5;
            if fy < horizon {
                continue;
            }
            let t = (fy - horizon) / (s - horizon).max(1.0);
            let half = s * (0.03 + 0.3 * t);
            let cx = s * 0.5;
            for x in 0..size {
                if (f64::from(x) + 0.5 - cx).abs() < half {
                    img[(y * size + x) as usize] = [95.0, 95.0, 100.0];
                }
            }
        }
    }

    let mut out = Vec::with_capacity(img.len() * 3);
    for px in img {
        // One draw per pixel: a byte of noise per channel, uniform in [-8, 8).
        let bits: u32 = rng.random();
        for (i, c) in px.into_iter().enumerate() {
            let noise = f64::from((bits >> (8 * i)) & 0xFF) / 16.0 - 8.0;
            out.push((c * light + noise).round().clamp(0.0, 255.0) as u8);
        }
    }
    out
}

fn fill_rect(img: &mut [[f64; 3]], size: u32, x0: f64, y0: f64, w: f64, h: f64, colour: [f64; 3]) {
    let s = f64::from(size);
    let (xa, xb) = (x0.max(0.0) as u32, (x0 + w).min(s) as u32);
    let (ya, yb) = (y0.max(0.0) as u32, (y0 + h).min(s) as u32);
    for y in ya..yb {
        for x in xa..xb {
            img[(y * size + x) as usize] = colour;
        }
    }
}

fn write_jpeg(path: &Path, rgb: &[u8], size: u32) -> Result<(), DatasetError> {
    let file = fs::File::create(path).map_err(DatasetError::io("writing", path))?;
    let mut w = BufWriter::new(file);
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut w, JPEG_QUALITY)
        .encode(rgb, size, size, image::ExtendedColorType::Rgb8)
        .map_err(|e| DatasetError::Other(format!("encoding {}: {e}", path.display())))?;
    w.flush().map_err(DatasetError::io("writing", path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::NoTick;

    #[test]
    fn generation_is_deterministic_by_seed_and_lands_inside_the_boundary() {
        let hr = Boundary::from_iso("HR").unwrap();
        let opts = SynthOptions {
            locations: 12,
            image_size: 16,
            seed: 3,
        };
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        generate(&hr, &opts, a.path(), &NoTick).unwrap();
        generate(&hr, &opts, b.path(), &NoTick).unwrap();
        let csv_a = fs::read_to_string(a.path().join(CSV_NAME)).unwrap();
        assert_eq!(csv_a, fs::read_to_string(b.path().join(CSV_NAME)).unwrap());
        let rows = crate::dataset::data_csv::read_data_csv(&a.path().join(CSV_NAME)).unwrap();
        assert_eq!(rows.len(), 12);
        for r in &rows {
            assert!(hr.contains(r.latitude, r.longitude), "{r:?}");
            for v in HEADINGS {
                let p = format!("images/{}/{v}.jpg", r.uuid);
                assert_eq!(
                    fs::read(a.path().join(&p)).unwrap(),
                    fs::read(b.path().join(&p)).unwrap()
                );
            }
        }
        let other = tempfile::tempdir().unwrap();
        generate(
            &hr,
            &SynthOptions { seed: 4, ..opts },
            other.path(),
            &NoTick,
        )
        .unwrap();
        assert_ne!(
            csv_a,
            fs::read_to_string(other.path().join(CSV_NAME)).unwrap()
        );
    }

    #[test]
    fn views_facing_the_sea_are_bluer_near_the_coast() {
        let site = |coast_km| Site {
            lat_n: 0.3,
            lon_n: 0.3,
            elevation: 0.1,
            coast_km,
            sea_bearing: 270.0,
            town_km: 100.0,
            road_heading: 0,
        };
        let blue = |px: &[u8]| {
            px.chunks(3)
                .filter(|c| c[2] > c[0] + 60 && c[2] > c[1] + 30)
                .count()
        };
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let near_west = paint(&site(2.0), 270, 32, &mut rng);
        let near_east = paint(&site(2.0), 90, 32, &mut rng);
        let far_west = paint(&site(200.0), 270, 32, &mut rng);
        // Only below the horizon (at about 0.53 of the height here): the sky is blue anywhere.
        let lower = |px: &[u8]| blue(&px[px.len() * 6 / 10 / 3 * 3..]);
        assert!(lower(&near_west) > 30, "{}", lower(&near_west));
        assert_eq!(lower(&near_east), 0);
        assert_eq!(lower(&far_west), 0);
    }
}
