//! Sutherland–Hodgman clipping of polygon rings against axis-aligned slabs.
//!
//! Clipping against a convex region keeps the signed area of a concave ring exact: the pieces
//! of a ring that leave and re-enter the region are joined by zero-width "bridges" along the
//! clip line, which add no area. That is all the grid needs (land area per cell, and land
//! polygons for maps), and it is far cheaper than general polygon boolean operations.

/// Which coordinate a slab constrains.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Axis {
    /// Longitude (x): a column.
    X,
    /// Latitude (y): a row strip.
    Y,
}

/// Clips an open ring to the slab `lo <= coord <= hi` along `axis`, writing the result into
/// `out` (cleared first). `tmp` is scratch space, passed in to avoid allocations in hot loops.
pub(crate) fn clip_slab(
    ring: &[(f64, f64)],
    axis: Axis,
    lo: f64,
    hi: f64,
    tmp: &mut Vec<(f64, f64)>,
    out: &mut Vec<(f64, f64)>,
) {
    clip_half_plane(ring, axis, lo, true, tmp);
    clip_half_plane(tmp, axis, hi, false, out);
}

/// Keeps the side `coord >= bound` (`keep_above`) or `coord <= bound`. Intersections are put
/// exactly on `bound` so adjacent cells share their clipped edges bit-for-bit.
fn clip_half_plane(
    input: &[(f64, f64)],
    axis: Axis,
    bound: f64,
    keep_above: bool,
    out: &mut Vec<(f64, f64)>,
) {
    out.clear();
    let Some(&last) = input.last() else {
        return;
    };
    let coord = |p: (f64, f64)| match axis {
        Axis::X => p.0,
        Axis::Y => p.1,
    };
    let inside = |p: (f64, f64)| {
        if keep_above {
            coord(p) >= bound
        } else {
            coord(p) <= bound
        }
    };
    let cross = |a: (f64, f64), b: (f64, f64)| {
        let t = (bound - coord(a)) / (coord(b) - coord(a));
        match axis {
            Axis::X => (bound, a.1 + t * (b.1 - a.1)),
            Axis::Y => (a.0 + t * (b.0 - a.0), bound),
        }
    };
    let mut prev = last;
    let mut prev_in = inside(prev);
    for &cur in input {
        let cur_in = inside(cur);
        if cur_in != prev_in {
            out.push(cross(prev, cur));
        }
        if cur_in {
            out.push(cur);
        }
        prev = cur;
        prev_in = cur_in;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geo::ring::twice_signed_area;

    fn clip_rect(ring: &[(f64, f64)], x: (f64, f64), y: (f64, f64)) -> Vec<(f64, f64)> {
        let (mut tmp, mut strip, mut cell) = (vec![], vec![], vec![]);
        clip_slab(ring, Axis::Y, y.0, y.1, &mut tmp, &mut strip);
        clip_slab(&strip, Axis::X, x.0, x.1, &mut tmp, &mut cell);
        cell
    }

    #[test]
    fn clipping_a_concave_ring_keeps_the_exact_area() {
        // A "U": 3x3 square minus the 1x2 notch (1..2, 1..3); area 7.
        let u = [
            (0.0, 0.0),
            (3.0, 0.0),
            (3.0, 3.0),
            (2.0, 3.0),
            (2.0, 1.0),
            (1.0, 1.0),
            (1.0, 3.0),
            (0.0, 3.0),
        ];
        assert_eq!(twice_signed_area(&u, (0.0, 0.0)), 14.0);
        // The top band 2..3 holds two disjoint arms, 1 each: the bridge adds nothing.
        let top = clip_rect(&u, (0.0, 3.0), (2.0, 3.0));
        assert_eq!(twice_signed_area(&top, (0.0, 0.0)), 4.0);
        // A window straddling the notch: arms 0.5 + 0.5, base 1.
        let mid = clip_rect(&u, (0.5, 2.5), (0.5, 1.5));
        assert!((twice_signed_area(&mid, (0.0, 0.0)) - 2.0 * 1.5).abs() < 1e-12);
    }

    #[test]
    fn a_ring_outside_the_slab_vanishes() {
        let sq = [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)];
        assert!(clip_rect(&sq, (2.0, 3.0), (0.0, 1.0)).is_empty());
    }

    #[test]
    fn cells_tile_the_ring_area() {
        let tri = [(0.1, 0.2), (2.9, 0.7), (1.3, 2.8)];
        let total = twice_signed_area(&tri, (0.0, 0.0));
        let mut sum = 0.0;
        for i in 0..3 {
            for j in 0..3 {
                let c = clip_rect(&tri, (i as f64, i as f64 + 1.0), (j as f64, j as f64 + 1.0));
                sum += twice_signed_area(&c, (0.0, 0.0));
            }
        }
        assert!((sum - total).abs() < 1e-12);
    }
}
