//! Planar ring primitives shared by boundaries, clipping and centroids.
//!
//! Coordinates are `(x, y)` = `(lon, lat)` in degrees. Point-in-ring queries are the hot path
//! of boundary containment (rejection sampling calls it ~10^5–10^6 times), so each ring gets a
//! horizontal band index: a crossing-number test only needs the edges whose latitude span
//! contains the query latitude, and the band lists exactly those candidates.

use geo::{Coord, LineString};

/// A planar point `(x, y)` = `(lon, lat)`.
pub(crate) type Pt = (f64, f64);

/// Axis-aligned bounding box of a coordinate sequence, as `[min_x, min_y, max_x, max_y]`.
pub(crate) fn bounds(coords: impl IntoIterator<Item = (f64, f64)>) -> [f64; 4] {
    let mut b = [
        f64::INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NEG_INFINITY,
    ];
    for (x, y) in coords {
        b[0] = b[0].min(x);
        b[1] = b[1].min(y);
        b[2] = b[2].max(x);
        b[3] = b[3].max(y);
    }
    b
}

/// Twice the signed area of an open ring (no repeated closing vertex), computed relative to
/// `origin` so that coordinates around (16°, 45°) do not cancel away the digits of small areas.
pub(crate) fn twice_signed_area(ring: &[(f64, f64)], origin: (f64, f64)) -> f64 {
    let n = ring.len();
    if n < 3 {
        return 0.0;
    }
    let mut sum = 0.0;
    let mut prev = (ring[n - 1].0 - origin.0, ring[n - 1].1 - origin.1);
    for &(x, y) in ring {
        let cur = (x - origin.0, y - origin.1);
        sum += prev.0 * cur.1 - cur.0 * prev.1;
        prev = cur;
    }
    sum
}

/// Vertices of a closed `LineString` without the repeated closing vertex.
pub(crate) fn open_ring(ls: &LineString<f64>) -> Vec<(f64, f64)> {
    let coords = &ls.0;
    let n = match (coords.first(), coords.last()) {
        (Some(a), Some(b)) if coords.len() > 1 && a == b => coords.len() - 1,
        _ => coords.len(),
    };
    coords[..n].iter().map(|c| (c.x, c.y)).collect()
}

/// Closed `LineString` from an open ring.
pub(crate) fn closed_line_string(ring: &[(f64, f64)]) -> LineString<f64> {
    let mut coords: Vec<Coord<f64>> = ring.iter().map(|&(x, y)| Coord { x, y }).collect();
    if let Some(&first) = coords.first() {
        coords.push(first);
    }
    LineString(coords)
}

/// A ring with its edge-band index for fast crossing-number tests.
#[derive(Debug, Clone)]
pub(crate) struct IndexedRing {
    /// Open ring vertices.
    pub(crate) pts: Vec<(f64, f64)>,
    pub(crate) bbox: [f64; 4],
    inv_band: f64,
    /// CSR layout: edges of band `k` are `edges[offsets[k]..offsets[k + 1]]`; edge `e` joins
    /// `pts[e]` and `pts[(e + 1) % n]`.
    offsets: Vec<u32>,
    edges: Vec<u32>,
}

impl IndexedRing {
    /// Edges per band, on average; small enough that a query touches a handful of edges.
    const EDGES_PER_BAND: usize = 8;

    pub(crate) fn new(pts: Vec<(f64, f64)>) -> Self {
        let n = pts.len();
        let bbox = bounds(pts.iter().copied());
        let nbands = (n / Self::EDGES_PER_BAND).clamp(1, 1 << 14);
        let height = bbox[3] - bbox[1];
        let inv_band = if height > 0.0 {
            nbands as f64 / height
        } else {
            0.0
        };
        let band_of = |y: f64| -> usize {
            // Same arithmetic at build and query time, so a latitude inside an edge's span
            // always maps into that edge's band range.
            let k = ((y - bbox[1]) * inv_band).floor();
            if k <= 0.0 {
                0
            } else {
                (k as usize).min(nbands - 1)
            }
        };
        let span = |e: usize| {
            let (a, b) = (pts[e], pts[(e + 1) % n]);
            (band_of(a.1.min(b.1)), band_of(a.1.max(b.1)))
        };
        let mut counts = vec![0u32; nbands + 1];
        for e in 0..n {
            let (lo, hi) = span(e);
            for c in &mut counts[lo..=hi] {
                *c += 1;
            }
        }
        let mut offsets = Vec::with_capacity(nbands + 1);
        let mut acc = 0u32;
        for &c in &counts[..nbands] {
            offsets.push(acc);
            acc += c;
        }
        offsets.push(acc);
        let mut fill = offsets.clone();
        let mut edges = vec![0u32; acc as usize];
        for e in 0..n {
            let (lo, hi) = span(e);
            for f in &mut fill[lo..=hi] {
                edges[*f as usize] = e as u32;
                *f += 1;
            }
        }
        Self {
            pts,
            bbox,
            inv_band,
            offsets,
            edges,
        }
    }

    /// Crossing-number (even-odd) test. Points exactly on an edge may go either way.
    pub(crate) fn contains(&self, x: f64, y: f64) -> bool {
        let b = &self.bbox;
        if !(x >= b[0] && x <= b[2] && y >= b[1] && y <= b[3]) || self.pts.len() < 3 {
            return false;
        }
        let nbands = self.offsets.len() - 1;
        let k = ((y - b[1]) * self.inv_band).floor();
        let k = if k <= 0.0 {
            0
        } else {
            (k as usize).min(nbands - 1)
        };
        let n = self.pts.len();
        let mut inside = false;
        for &e in &self.edges[self.offsets[k] as usize..self.offsets[k + 1] as usize] {
            let e = e as usize;
            let (a, c) = (self.pts[e], self.pts[(e + 1) % n]);
            if (a.1 > y) != (c.1 > y) {
                let x_cross = a.0 + (y - a.1) * (c.0 - a.0) / (c.1 - a.1);
                if x < x_cross {
                    inside = !inside;
                }
            }
        }
        inside
    }

    /// Edges as pairs of endpoints.
    pub(crate) fn edges(&self) -> impl Iterator<Item = ((f64, f64), (f64, f64))> + '_ {
        let n = self.pts.len();
        (0..n).map(move |e| (self.pts[e], self.pts[(e + 1) % n]))
    }
}

/// Plain crossing-number test over a closed ring of `f32` coordinates (world-data polygons).
pub(crate) fn ring_contains_f32(ring: &LineString<f32>, x: f64, y: f64) -> bool {
    let mut inside = false;
    for w in ring.0.windows(2) {
        let (a, c) = (
            (f64::from(w[0].x), f64::from(w[0].y)),
            (f64::from(w[1].x), f64::from(w[1].y)),
        );
        if (a.1 > y) != (c.1 > y) {
            let x_cross = a.0 + (y - a.1) * (c.0 - a.0) / (c.1 - a.1);
            if x < x_cross {
                inside = !inside;
            }
        }
    }
    inside
}

/// Nearest point to `p` on segment `a`–`b` within parameter range `[t0, t1]`, measured in the
/// plane scaled by `kx` along x. Returns `(squared distance, point)` in unscaled coordinates.
pub(crate) fn nearest_on_segment(
    p: (f64, f64),
    a: (f64, f64),
    b: (f64, f64),
    kx: f64,
    t0: f64,
    t1: f64,
) -> (f64, (f64, f64)) {
    let (dx, dy) = ((b.0 - a.0) * kx, b.1 - a.1);
    let (px, py) = ((p.0 - a.0) * kx, p.1 - a.1);
    let len2 = dx * dx + dy * dy;
    let t = if len2 > 0.0 {
        ((px * dx + py * dy) / len2).clamp(t0, t1)
    } else {
        t0
    };
    let (ex, ey) = (px - t * dx, py - t * dy);
    // Interpolating in degrees (not un-scaling x) returns vertices bit-exactly at t = 0 or 1.
    (
        ex * ex + ey * ey,
        (a.0 + t * (b.0 - a.0), a.1 + t * (b.1 - a.1)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square() -> IndexedRing {
        IndexedRing::new(vec![(0.0, 0.0), (2.0, 0.0), (2.0, 2.0), (0.0, 2.0)])
    }

    #[test]
    fn square_contains_its_interior_and_not_its_outside() {
        let r = square();
        assert!(r.contains(1.0, 1.0));
        assert!(r.contains(0.1, 1.9));
        assert!(!r.contains(2.1, 1.0));
        assert!(!r.contains(1.0, -0.1));
    }

    #[test]
    fn band_index_agrees_with_brute_force_on_a_spiky_ring() {
        // A comb: many vertices, several crossings per latitude.
        let mut pts = vec![];
        for i in 0..50 {
            let x = i as f64;
            pts.push((x, 0.0));
            pts.push((x + 0.5, 10.0 + (i % 7) as f64));
        }
        pts.push((50.0, 0.0));
        pts.push((50.0, -5.0));
        pts.push((0.0, -5.0));
        let ring = IndexedRing::new(pts.clone());
        let brute = |x: f64, y: f64| {
            let n = pts.len();
            let mut inside = false;
            for e in 0..n {
                let (a, c) = (pts[e], pts[(e + 1) % n]);
                if (a.1 > y) != (c.1 > y) && x < a.0 + (y - a.1) * (c.0 - a.0) / (c.1 - a.1) {
                    inside = !inside;
                }
            }
            inside
        };
        for i in 0..200 {
            for j in 0..100 {
                let (x, y) = (i as f64 * 0.2573 - 1.0, j as f64 * 0.2391 - 6.0);
                assert_eq!(ring.contains(x, y), brute(x, y), "at ({x}, {y})");
            }
        }
    }

    #[test]
    fn signed_area_is_positive_for_counter_clockwise_rings() {
        let ccw = [(0.0, 0.0), (2.0, 0.0), (2.0, 2.0), (0.0, 2.0)];
        assert_eq!(twice_signed_area(&ccw, (0.0, 0.0)), 8.0);
        let cw: Vec<_> = ccw.iter().rev().copied().collect();
        assert_eq!(twice_signed_area(&cw, (1.0, 1.0)), -8.0);
    }

    #[test]
    fn nearest_on_segment_clamps_to_the_parameter_range() {
        let (d2, q) = nearest_on_segment((5.0, 1.0), (0.0, 0.0), (2.0, 0.0), 1.0, 0.0, 1.0);
        assert_eq!(q, (2.0, 0.0));
        assert_eq!(d2, 10.0);
        let (_, q) = nearest_on_segment((1.0, 1.0), (0.0, 0.0), (2.0, 0.0), 1.0, 0.0, 0.25);
        assert_eq!(q, (0.5, 0.0));
    }
}
