//! Convex cells in a plane: the shapes quadtree squares and Voronoi regions share.
//!
//! A [`Convex`] is a counter-clockwise polygon in some plane (lon/lat for squares, the
//! projected CRS for clusters). Distances are measured with x scaled by `kx`, as everywhere
//! in this module (`kx = 1` in a projected CRS). [`BoxIndex`] finds the cells near a point or
//! a segment without scanning them all; [`nearest_land_points`] is the clipped centroid of
//! such cells, the generalisation of the grid's (`centroids.rs`).

use super::ring::{Pt, bounds, nearest_on_segment};

/// A convex polygon, counter-clockwise, as an open vertex list.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Convex {
    pts: Vec<Pt>,
    bbox: [f64; 4],
}

fn cross(o: Pt, a: Pt, b: Pt) -> f64 {
    (a.0 - o.0) * (b.1 - o.1) - (a.1 - o.1) * (b.0 - o.0)
}

impl Convex {
    /// The rectangle `[x0, x1] × [y0, y1]`.
    pub(crate) fn rect([x0, y0, x1, y1]: [f64; 4]) -> Self {
        Self {
            pts: vec![(x0, y0), (x1, y0), (x1, y1), (x0, y1)],
            bbox: [x0, y0, x1, y1],
        }
    }

    /// Vertices, counter-clockwise.
    pub(crate) fn pts(&self) -> &[Pt] {
        &self.pts
    }

    /// `[min_x, min_y, max_x, max_y]`.
    pub(crate) fn bbox(&self) -> [f64; 4] {
        self.bbox
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pts.len() < 3
    }

    fn edges(&self) -> impl Iterator<Item = (Pt, Pt)> + '_ {
        let n = self.pts.len();
        (0..n).map(move |i| (self.pts[i], self.pts[(i + 1) % n]))
    }

    /// Whether `p` is inside or on the polygon.
    pub(crate) fn contains(&self, p: Pt) -> bool {
        let b = &self.bbox;
        !self.is_empty()
            && p.0 >= b[0]
            && p.0 <= b[2]
            && p.1 >= b[1]
            && p.1 <= b[3]
            && self.edges().all(|(a, c)| cross(a, c, p) >= 0.0)
    }

    /// Squared distance from `p` to the polygon (0 inside), x scaled by `kx`.
    pub(crate) fn dist2(&self, p: Pt, kx: f64) -> f64 {
        if self.contains(p) {
            return 0.0;
        }
        self.edges()
            .map(|(a, b)| nearest_on_segment(p, a, b, kx, 0.0, 1.0).0)
            .fold(f64::INFINITY, f64::min)
    }

    /// The part of the polygon where `n · (p − q) ≤ 0`.
    pub(crate) fn cut(&self, q: Pt, n: Pt) -> Self {
        let mut out = Vec::with_capacity(self.pts.len() + 1);
        clip_half_plane(&self.pts, q, n, &mut out);
        let bbox = bounds(out.iter().copied());
        Self { pts: out, bbox }
    }

    /// Sutherland–Hodgman: `ring` clipped to the polygon, into `out`. As with the grid's slab
    /// clipping, a concave ring keeps its exact signed area (pieces are joined by zero-width
    /// bridges along the polygon's edges).
    pub(crate) fn clip_ring(&self, ring: &[Pt], tmp: &mut Vec<Pt>, out: &mut Vec<Pt>) {
        out.clear();
        out.extend_from_slice(ring);
        for (a, b) in self.edges() {
            if out.is_empty() {
                return;
            }
            // Inside is left of a→b: n = the edge's right-hand normal.
            let n = (b.1 - a.1, a.0 - b.0);
            clip_half_plane(out, a, n, tmp);
            std::mem::swap(out, tmp);
        }
    }

    /// Cyrus–Beck: the parameter range of segment `a`–`b` inside the polygon, if any.
    pub(crate) fn clip_segment(&self, a: Pt, b: Pt) -> Option<(f64, f64)> {
        let (mut t0, mut t1) = (0.0f64, 1.0f64);
        let d = (b.0 - a.0, b.1 - a.1);
        for (p, q) in self.edges() {
            // Inside: n · (x − p) ≤ 0 with n the right-hand normal of p→q.
            let n = (q.1 - p.1, p.0 - q.0);
            let num = n.0 * (a.0 - p.0) + n.1 * (a.1 - p.1);
            let den = n.0 * d.0 + n.1 * d.1;
            if den == 0.0 {
                if num > 0.0 {
                    return None;
                }
            } else {
                let t = -num / den;
                if den < 0.0 {
                    t0 = t0.max(t);
                } else {
                    t1 = t1.min(t);
                }
            }
        }
        (t0 <= t1).then_some((t0, t1))
    }
}

/// Keeps the side `n · (p − q) ≤ 0` of `input`, into `out` (cleared first).
fn clip_half_plane(input: &[Pt], q: Pt, n: Pt, out: &mut Vec<Pt>) {
    out.clear();
    let Some(&last) = input.last() else {
        return;
    };
    let side = |p: Pt| n.0 * (p.0 - q.0) + n.1 * (p.1 - q.1);
    let mut prev = last;
    let mut prev_s = side(prev);
    for &cur in input {
        let s = side(cur);
        if (s <= 0.0) != (prev_s <= 0.0) {
            let t = prev_s / (prev_s - s);
            out.push((prev.0 + t * (cur.0 - prev.0), prev.1 + t * (cur.1 - prev.1)));
        }
        if s <= 0.0 {
            out.push(cur);
        }
        prev = cur;
        prev_s = s;
    }
}

/// Buckets of a uniform grid over boxes, each listing the boxes that overlap it.
pub(crate) struct BoxIndex {
    x0: f64,
    y0: f64,
    side: f64,
    nx: usize,
    ny: usize,
    /// CSR: boxes of bucket `k` are `items[offsets[k]..offsets[k + 1]]`, ascending.
    offsets: Vec<u32>,
    items: Vec<u32>,
}

impl BoxIndex {
    /// An index over `boxes` (`[min_x, min_y, max_x, max_y]`), with about one box per bucket.
    pub(crate) fn new(boxes: &[[f64; 4]]) -> Self {
        let extent = bounds(
            boxes
                .iter()
                .flat_map(|b| [(b[0], b[1]), (b[2], b[3])])
                .filter(|p| p.0.is_finite() && p.1.is_finite()),
        );
        let (w, h) = (
            (extent[2] - extent[0]).max(1e-12),
            (extent[3] - extent[1]).max(1e-12),
        );
        let side = (w * h / boxes.len().max(1) as f64).sqrt().max(1e-12);
        let nx = ((w / side).ceil() as usize).clamp(1, 4096);
        let ny = ((h / side).ceil() as usize).clamp(1, 4096);
        let side = (w / nx as f64).max(h / ny as f64);
        let mut index = Self {
            x0: extent[0],
            y0: extent[1],
            side,
            nx,
            ny,
            offsets: Vec::new(),
            items: Vec::new(),
        };
        let mut lists: Vec<Vec<u32>> = vec![Vec::new(); nx * ny];
        for (id, b) in boxes.iter().enumerate() {
            let (i0, i1) = index.span(b[0], b[2], nx, index.x0);
            let (j0, j1) = index.span(b[1], b[3], ny, index.y0);
            for i in i0..=i1 {
                for j in j0..=j1 {
                    lists[i * ny + j].push(id as u32);
                }
            }
        }
        index.offsets.push(0);
        for l in lists {
            index.items.extend(l);
            index.offsets.push(index.items.len() as u32);
        }
        index
    }

    fn bucket(&self, v: f64, origin: f64, n: usize) -> usize {
        let f = ((v - origin) / self.side).floor();
        if f.is_nan() || f <= 0.0 {
            0
        } else {
            (f as usize).min(n - 1)
        }
    }

    fn span(&self, lo: f64, hi: f64, n: usize, origin: f64) -> (usize, usize) {
        (self.bucket(lo, origin, n), self.bucket(hi, origin, n))
    }

    fn at(&self, i: usize, j: usize) -> &[u32] {
        let k = i * self.ny + j;
        &self.items[self.offsets[k] as usize..self.offsets[k + 1] as usize]
    }

    /// Boxes whose buckets overlap `[min_x, min_y, max_x, max_y]`, each once, ascending.
    pub(crate) fn query(&self, b: [f64; 4], out: &mut Vec<u32>) {
        out.clear();
        let (i0, i1) = self.span(b[0], b[2], self.nx, self.x0);
        let (j0, j1) = self.span(b[1], b[3], self.ny, self.y0);
        for i in i0..=i1 {
            for j in j0..=j1 {
                out.extend_from_slice(self.at(i, j));
            }
        }
        out.sort_unstable();
        out.dedup();
    }

    /// The box id with the smallest `dist2(id)` (a squared distance in the plane scaled by
    /// `kx` along x, never less than the distance to the box), ties to the lower id.
    pub(crate) fn nearest(&self, p: Pt, kx: f64, dist2: impl Fn(u32) -> f64) -> Option<u32> {
        let centre = (
            self.bucket(p.0, self.x0, self.nx),
            self.bucket(p.1, self.y0, self.ny),
        );
        nearest_in_rings(
            centre,
            (self.nx, self.ny),
            self.side * kx.min(1.0),
            |i, j| {
                self.at(i, j)
                    .iter()
                    .map(|&id| (dist2(id), id))
                    .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)))
            },
        )
    }
}

/// The nearest of the candidates in the slots of an `nx × ny` grid whose slots are `step`
/// wide (in the distance's units), searching square rings of slots around `centre` outwards
/// and stopping once no farther ring can win. `slot(i, j)` gives a slot's best candidate as
/// (squared distance, id); ties go to the lower id.
pub(crate) fn nearest_in_rings(
    (ci, cj): (usize, usize),
    (nx, ny): (usize, usize),
    step: f64,
    slot: impl Fn(usize, usize) -> Option<(f64, u32)>,
) -> Option<u32> {
    // A candidate first met on ring r lies outside the square of rings < r, which is at
    // least (r - 1) slots away; the factor below 1 absorbs rounding in the slot edges.
    let step = step * (1.0 - 1e-9);
    let mut best: Option<(f64, u32)> = None;
    let consider = |best: &mut Option<(f64, u32)>, i: usize, j: usize| {
        if let Some((d, id)) = slot(i, j)
            && best.is_none_or(|(bd, bid)| d < bd || (d == bd && id < bid))
        {
            *best = Some((d, id));
        }
    };
    for r in 0..=nx.max(ny) {
        if let Some((bd, _)) = best {
            let lb = r.saturating_sub(1) as f64 * step;
            if lb * lb > bd {
                break;
            }
        }
        let (i0, i1) = (ci.saturating_sub(r), (ci + r).min(nx - 1));
        let (j0, j1) = (cj.saturating_sub(r), (cj + r).min(ny - 1));
        for i in i0..=i1 {
            if i + r == ci || i == ci + r {
                for j in j0..=j1 {
                    consider(&mut best, i, j);
                }
            } else {
                if cj >= r {
                    consider(&mut best, i, cj - r);
                }
                if cj + r < ny {
                    consider(&mut best, i, cj + r);
                }
            }
        }
    }
    best.map(|(_, id)| id)
}

/// For each cell whose centre is off land: `(squared distance, point)` of the nearest point
/// of the cell's land to its centre, or `None` when the cell has no land edge to offer (its
/// caller falls back). `rings` are the boundary's rings in the cells' plane, `on_land` tells
/// whether a point of that plane is on land.
///
/// The nearest land point of a convex cell lies on the border of land ∩ cell: on a piece of
/// coast inside the cell, or on a cell edge inside land. On an edge, it is the centre's
/// projection onto the edge when that is on land; otherwise a coast crossing of the edge,
/// which the coast pieces already offer.
pub(crate) fn nearest_land_points<'a>(
    rings: impl Iterator<Item = &'a [Pt]>,
    cells: &[&Convex],
    centres: &[Pt],
    kx: f64,
    on_land: impl Fn(Pt) -> bool,
) -> Vec<Option<(f64, Pt)>> {
    let mut best: Vec<Option<(f64, Pt)>> = cells
        .iter()
        .zip(centres)
        .map(|(cell, &m)| {
            cell.edges()
                .map(|(a, b)| nearest_on_segment(m, a, b, kx, 0.0, 1.0))
                .filter(|(_, p)| on_land(*p))
                .min_by(|x, y| x.0.total_cmp(&y.0))
        })
        .collect();
    if cells.is_empty() {
        return best;
    }
    let boxes: Vec<[f64; 4]> = cells.iter().map(|c| c.bbox()).collect();
    let index = BoxIndex::new(&boxes);
    let mut near = Vec::new();
    for ring in rings {
        let n = ring.len();
        for e in 0..n {
            let (a, b) = (ring[e], ring[(e + 1) % n]);
            let bb = [a.0.min(b.0), a.1.min(b.1), a.0.max(b.0), a.1.max(b.1)];
            index.query(bb, &mut near);
            for &k in &near {
                let k = k as usize;
                let cb = boxes[k];
                if bb[2] < cb[0] || bb[0] > cb[2] || bb[3] < cb[1] || bb[1] > cb[3] {
                    continue;
                }
                if let Some((t0, t1)) = cells[k].clip_segment(a, b) {
                    let cand = nearest_on_segment(centres[k], a, b, kx, t0, t1);
                    if best[k].is_none_or(|(d, _)| cand.0 < d) {
                        best[k] = Some(cand);
                    }
                }
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geo::ring::twice_signed_area;

    fn unit() -> Convex {
        Convex::rect([0.0, 0.0, 1.0, 1.0])
    }

    #[test]
    fn a_rectangle_contains_its_inside_and_edges() {
        let c = unit();
        assert!(c.contains((0.5, 0.5)) && c.contains((0.0, 1.0)));
        assert!(!c.contains((1.01, 0.5)) && !c.contains((f64::NAN, 0.5)));
        assert_eq!(c.dist2((0.5, 0.5), 1.0), 0.0);
        assert!((c.dist2((3.0, 0.5), 0.5) - 1.0).abs() < 1e-12);
        assert!((c.dist2((2.0, 2.0), 1.0) - 2.0).abs() < 1e-12);
    }

    #[test]
    fn cutting_keeps_the_near_half() {
        // Keep x ≤ 0.25.
        let c = unit().cut((0.25, 0.0), (1.0, 0.0));
        assert_eq!(c.bbox(), [0.0, 0.0, 0.25, 1.0]);
        let area = 0.5 * twice_signed_area(c.pts(), (0.0, 0.0));
        assert!((area - 0.25).abs() < 1e-12, "{area}");
        assert!(unit().cut((2.0, 0.0), (-1.0, 0.0)).is_empty());
    }

    #[test]
    fn clipping_a_concave_ring_to_a_triangle_keeps_the_exact_area() {
        // A "U": the unit square without (0.25..0.75) × (0.5..1); triangle x + y ≤ 1.
        let ring = [
            (0.0, 0.0),
            (1.0, 0.0),
            (1.0, 1.0),
            (0.75, 1.0),
            (0.75, 0.5),
            (0.25, 0.5),
            (0.25, 1.0),
            (0.0, 1.0),
        ];
        let tri = unit().cut((1.0, 0.0), (1.0, 1.0));
        let (mut tmp, mut out) = (Vec::new(), Vec::new());
        tri.clip_ring(&ring, &mut tmp, &mut out);
        let area = 0.5 * twice_signed_area(&out, (0.0, 0.0));
        // The triangle (0.5) less the notch below x + y = 1: ∫ (0.5 − x) dx over [0.25, 0.5].
        let expected = 0.5 - 0.03125;
        assert!((area - expected).abs() < 1e-12, "{area} vs {expected}");
    }

    #[test]
    fn segment_clipping_gives_the_inside_parameter_range() {
        let c = unit();
        assert_eq!(c.clip_segment((-1.0, 0.5), (3.0, 0.5)), Some((0.25, 0.5)));
        assert_eq!(c.clip_segment((-1.0, 2.0), (3.0, 2.0)), None);
        assert_eq!(c.clip_segment((0.2, 0.2), (0.4, 0.4)), Some((0.0, 1.0)));
    }

    #[test]
    fn box_index_nearest_agrees_with_brute_force() {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for _ in 0..30 {
            let n = rng.random_range(1..60);
            let cells: Vec<Convex> = (0..n)
                .map(|_| {
                    let (x, y) = (rng.random_range(0.0..10.0), rng.random_range(0.0..5.0));
                    let (w, h) = (rng.random_range(0.01..2.0), rng.random_range(0.01..2.0));
                    Convex::rect([x, y, x + w, y + h])
                })
                .collect();
            let boxes: Vec<[f64; 4]> = cells.iter().map(Convex::bbox).collect();
            let index = BoxIndex::new(&boxes);
            let kx = 0.7;
            for _ in 0..50 {
                let p = (rng.random_range(-3.0..13.0), rng.random_range(-3.0..8.0));
                let brute = (0..n)
                    .map(|k| (cells[k].dist2(p, kx), k as u32))
                    .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)))
                    .map(|(_, k)| k);
                let found = index.nearest(p, kx, |k| cells[k as usize].dist2(p, kx));
                assert_eq!(found, brute, "{p:?}");
            }
        }
    }

    #[test]
    fn nearest_land_point_of_an_off_land_centre() {
        // Land is x ≥ 0.8 (a big rectangle); the cell is the unit square, centre (0.5, 0.5).
        let land = [(0.8, -5.0), (9.0, -5.0), (9.0, 5.0), (0.8, 5.0)];
        let cell = unit();
        let on_land = |p: Pt| p.0 >= 0.8 && p.0 <= 9.0 && p.1.abs() <= 5.0;
        let got = nearest_land_points(
            std::iter::once(&land[..]),
            &[&cell],
            &[(0.5, 0.5)],
            1.0,
            on_land,
        );
        let (d2, p) = got[0].expect("the cell has land");
        assert!(
            (p.0 - 0.8).abs() < 1e-12 && (p.1 - 0.5).abs() < 1e-12,
            "{p:?}"
        );
        assert!((d2 - 0.09).abs() < 1e-12);
    }
}
