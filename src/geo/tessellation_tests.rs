//! The quadtree and cluster kinds through `create_classes`: split and merge rules on
//! hand-made point sets, determinism, assignment of every point, centroids and errors.

use super::classes::tests::{ell, pt, square};
use super::classes::{ClassPoint, ClassTable, create_classes};
use super::convex::Convex;
use super::projection::projection;
use super::ring::Pt;
use super::{Boundary, CellScheme, CellSpec, CentroidMode, GeoError};

/// `n` train points on a small circle around (lat, lon).
fn clump(lat: f64, lon: f64, n: usize) -> Vec<ClassPoint> {
    (0..n)
        .map(|i| {
            let a = i as f64 * 2.399;
            let r = 0.01 + 0.002 * i as f64;
            pt(lat + r * a.sin(), lon + r * a.cos(), true)
        })
        .collect()
}

fn quadtree(
    spacing: f64,
    max_locations: usize,
    min_spacing: f64,
    min_locations: usize,
) -> CellSpec {
    CellSpec {
        scheme: CellScheme::Quadtree {
            spacing,
            max_locations,
            min_spacing,
        },
        min_locations,
    }
}

fn clusters(cells: usize, seed: u64, min_locations: usize) -> CellSpec {
    CellSpec {
        scheme: CellScheme::Clusters { cells, seed },
        min_locations,
    }
}

fn classes(b: &Boundary, spec: &CellSpec, points: &[ClassPoint]) -> Result<ClassTable, GeoError> {
    let p = projection("EPSG:3766").unwrap();
    create_classes(b, spec, points, CentroidMode::Weighted, p.as_ref())
}

fn sides(t: &ClassTable) -> Vec<f64> {
    t.cells
        .iter()
        .map(|c| c.bounds.max_lon - c.bounds.min_lon)
        .collect()
}

fn at(t: &ClassTable, col: usize, row: usize, side: f64) -> &super::Cell {
    t.cells
        .iter()
        .find(|c| {
            (c.col, c.row) == (Some(col), Some(row))
                && (c.bounds.max_lon - c.bounds.min_lon - side).abs() < 1e-9
        })
        .unwrap_or_else(|| panic!("no {side}° cell at ({col}, {row})"))
}

#[test]
fn a_square_with_more_than_max_locations_is_split_into_ordered_children() {
    // 1° roots: four of them. 8 train points in the south-west root, split at 0.5°.
    let mut points = clump(44.25, 15.25, 4); // its south-west child
    points.extend(clump(44.75, 15.75, 4)); // its north-east child
    points.push(pt(45.5, 16.5, true)); // the north-east root
    let t = classes(&square(), &quadtree(1.0, 5, 0.5, 1), &points).unwrap();
    // The split root is replaced by its four children, in place and in child order
    // (column outer: SW, NW, SE, NE), then the other roots in grid order.
    let order: Vec<(Option<usize>, Option<usize>, f64)> = t
        .cells
        .iter()
        .map(|c| (c.col, c.row, c.bounds.max_lon - c.bounds.min_lon))
        .collect();
    assert_eq!(
        order,
        vec![
            (Some(0), Some(0), 0.5),
            (Some(0), Some(1), 0.5),
            (Some(1), Some(0), 0.5),
            (Some(1), Some(1), 0.5),
            (Some(0), Some(1), 1.0),
            (Some(1), Some(0), 1.0),
            (Some(1), Some(1), 1.0),
        ]
    );
    assert_eq!(at(&t, 0, 0, 0.5).n_train, 4);
    assert_eq!(at(&t, 1, 1, 0.5).n_train, 4);
    assert_eq!(at(&t, 1, 1, 1.0).n_train, 1);
    // Classes are the cells with train points, dense in cell order.
    assert_eq!(t.num_classes(), 3);
    assert_eq!(t.class_cells, vec![0, 3, 6]);
    let c = at(&t, 1, 1, 0.5);
    assert_eq!(
        (
            c.bounds.min_lon,
            c.bounds.min_lat,
            c.bounds.max_lon,
            c.bounds.max_lat
        ),
        (15.5, 44.5, 16.0, 45.0)
    );
}

#[test]
fn splitting_stops_at_max_locations_and_at_min_spacing() {
    let points = clump(44.2, 15.2, 40);
    // Enough room: 1° → 0.5 → 0.25 → 0.125, where the clump (radius < 0.1°) still holds 40.
    let t = classes(&square(), &quadtree(1.0, 10, 0.1, 1), &points).unwrap();
    let smallest = sides(&t).into_iter().fold(f64::INFINITY, f64::min);
    assert!((smallest - 0.125).abs() < 1e-12, "{smallest}");
    assert!(
        t.cells.iter().any(|c| c.n_train > 10),
        "min_spacing stops it"
    );
    // min_spacing = the root side: no split at all, whatever the count.
    let t = classes(&square(), &quadtree(1.0, 10, 1.0, 1), &points).unwrap();
    assert!(sides(&t).iter().all(|&s| s == 1.0));
    assert_eq!(t.cells.len(), 4);
    // max_locations above the count: no split either.
    let t = classes(&square(), &quadtree(1.0, 40, 0.1, 1), &points).unwrap();
    assert_eq!(t.cells.len(), 4);
}

#[test]
fn children_without_land_are_dropped_and_their_points_moved_to_the_nearest_child() {
    // One 2° root over the ell; its north-east child has no land.
    let mut points = clump(44.5, 15.5, 3);
    points.extend(clump(45.5, 15.5, 3));
    points.extend(clump(44.5, 16.5, 3));
    points.push(pt(45.9, 16.2, true)); // in the missing quarter, nearest the north-west child
    let t = classes(&ell(), &quadtree(2.0, 5, 1.0, 1), &points).unwrap();
    assert_eq!(t.cells.len(), 3);
    assert!(
        t.cells
            .iter()
            .all(|c| !(c.col == Some(1) && c.row == Some(1)))
    );
    let last = t.points[points.len() - 1];
    assert!(last.moved);
    assert_eq!(t.cells[last.cell].col, Some(0));
    assert_eq!(t.cells[last.cell].row, Some(1));
    assert_eq!(t.moved, 1);
}

#[test]
fn cells_under_min_locations_are_not_classes_and_their_points_get_the_nearest_class() {
    let mut points = clump(44.5, 15.5, 6); // SW root: a class
    points.extend(clump(45.5, 16.5, 6)); // NE root: a class
    points.extend(clump(45.5, 15.1, 2)); // NW root: 2 < 3, not a class
    points.push(pt(45.5, 15.2, false));
    let t = classes(&square(), &quadtree(1.0, 100, 1.0, 3), &points).unwrap();
    let nw = at(&t, 0, 1, 1.0);
    assert_eq!((nw.n_train, nw.class), (2, None));
    assert_eq!(t.num_classes(), 2);
    // NW's points go to the nearest class cell: SW (0.5° away at 15.1–15.2 E) beats NE
    // (0.8–0.9° of longitude, ×cos(45°) ≈ 0.57–0.64, away).
    let sw_class = at(&t, 0, 0, 1.0).class.unwrap();
    for a in &t.points[12..] {
        assert_eq!(a.cell, nw.index);
        assert_eq!(a.class, sw_class);
        assert!(a.class_from_neighbour);
    }
    assert_eq!(t.without_class, 3);
}

fn hr_points(n: usize, seed: u64) -> Vec<ClassPoint> {
    use rand::{RngExt, SeedableRng};
    let hr = Boundary::from_iso("HR").unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let b = hr.bbox();
    let mut out = Vec::new();
    while out.len() < n {
        let lat = rng.random_range(b.min_lat..b.max_lat);
        let lon = rng.random_range(b.min_lon..b.max_lon);
        // Land, 80 % train; and some val/test points at sea and in the neighbours, which are
        // moved or kept by the cell around them. (Train points far at sea can make a cluster
        // without land, an error tested below.)
        if hr.contains(lat, lon) {
            out.push(pt(lat, lon, rng.random_bool(0.8)));
        } else if rng.random_bool(0.1) {
            out.push(pt(lat, lon, false));
        }
    }
    out
}

fn fingerprint(t: &ClassTable) -> String {
    format!(
        "{:?}",
        (
            t.cells
                .iter()
                .map(|c| (c.bounds, c.outline.clone(), c.clipped, c.weighted, c.class))
                .collect::<Vec<_>>(),
            &t.points,
        )
    )
}

#[test]
fn quadtree_and_clusters_are_deterministic_whatever_the_threads() {
    let hr = Boundary::from_iso("HR").unwrap();
    let points = hr_points(3000, 5);
    for spec in [quadtree(0.5, 60, 0.05, 3), clusters(40, 9, 1)] {
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
            .install(|| classes(&hr, &spec, &points).unwrap());
        let many = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap()
            .install(|| classes(&hr, &spec, &points).unwrap());
        assert_eq!(fingerprint(&one), fingerprint(&many), "{spec:?}");
        assert_eq!(
            fingerprint(&one),
            fingerprint(&classes(&hr, &spec, &points).unwrap())
        );
    }
    // Another seed, other clusters.
    let a = classes(&hr, &clusters(40, 9, 1), &points).unwrap();
    let b = classes(&hr, &clusters(40, 10, 1), &points).unwrap();
    assert_ne!(fingerprint(&a), fingerprint(&b));
}

fn inside(outline: &[Pt], p: Pt) -> bool {
    // Convex and counter-clockwise; the tolerance absorbs the projection's round trip.
    let n = outline.len();
    (0..n).all(|i| {
        let (a, b) = (outline[i], outline[(i + 1) % n]);
        let len = (b.0 - a.0).hypot(b.1 - a.1);
        (b.0 - a.0) * (p.1 - a.1) - (b.1 - a.1) * (p.0 - a.0) >= -1e-6 * len.max(1.0)
    })
}

#[test]
fn every_point_gets_a_cell_and_a_class_and_lies_in_its_cell_unless_moved() {
    let hr = Boundary::from_iso("HR").unwrap();
    let points = hr_points(4000, 11);
    let proj = projection("EPSG:3766").unwrap();
    for spec in [quadtree(0.5, 50, 0.05, 4), clusters(55, 7, 3)] {
        let t = classes(&hr, &spec, &points).unwrap();
        assert_eq!(t.points.len(), points.len());
        let mut per_cell = vec![0usize; t.cells.len()];
        for (p, a) in points.iter().zip(&t.points) {
            assert!(a.cell < t.cells.len() && a.class < t.num_classes());
            per_cell[a.cell] += 1;
            let cell = &t.cells[a.cell];
            if !a.moved {
                // Squares are convex in lon/lat, Voronoi regions in the projected plane.
                let (mut outline, mut q) = (cell.outline.clone(), [(p.lon, p.lat)]);
                if matches!(spec.scheme, CellScheme::Clusters { .. }) {
                    proj.forward(&mut outline).unwrap();
                    proj.forward(&mut q).unwrap();
                }
                assert!(inside(&outline, q[0]), "{p:?} not in its cell");
            }
            match cell.class {
                Some(c) => assert!(c == a.class && !a.class_from_neighbour),
                None => assert!(a.class_from_neighbour),
            }
        }
        assert_eq!(
            per_cell,
            t.cells.iter().map(|c| c.n_points).collect::<Vec<_>>()
        );
        for (class, &cell) in t.class_cells.iter().enumerate() {
            assert_eq!(t.cells[cell].class, Some(class));
            assert!(t.cells[cell].n_train >= spec.min_locations);
        }
        assert!(t.class_cells.windows(2).all(|w| w[0] < w[1]));
    }
}

#[test]
fn quadtree_centroids_are_the_square_centre_the_nearest_land_and_the_train_mean() {
    let hr = Boundary::from_iso("HR").unwrap();
    let points = hr_points(3000, 2);
    let t = classes(&hr, &quadtree(0.5, 40, 0.05, 1), &points).unwrap();
    assert!(t.cells.len() > 58, "dense cells were split");
    for c in &t.cells {
        let m = c.bounds.center();
        assert_eq!(c.geometric, m);
        assert!(c.bounds.contains(c.clipped.lat, c.clipped.lon));
        if c.is_true_centroid {
            assert_eq!(c.clipped, m);
        } else {
            let (lat, lon) = hr.nearest_point(c.clipped.lat, c.clipped.lon);
            assert!((lat - c.clipped.lat).abs() < 1e-9 && (lon - c.clipped.lon).abs() < 1e-9);
        }
    }
    for (k, c) in t.cells.iter().enumerate() {
        let train: Vec<&ClassPoint> = points
            .iter()
            .zip(&t.points)
            .filter(|(p, a)| p.is_train && a.cell == k)
            .map(|(p, _)| p)
            .collect();
        match c.weighted {
            None => assert!(train.is_empty()),
            Some(w) => {
                let lat = train.iter().map(|p| p.lat).sum::<f64>() / train.len() as f64;
                assert!((w.lat - lat).abs() < 1e-12);
            }
        }
    }
}

#[test]
fn a_cluster_cell_is_the_voronoi_region_and_its_geometric_centroid_the_land_centroid() {
    // Two clumps on the square boundary, west and east: the regions split the square at the
    // bisector, about 16° E, and each land centroid is near the middle of its half.
    let mut points = clump(45.0, 15.5, 20);
    points.extend(clump(45.0, 16.5, 20));
    let t = classes(&square(), &clusters(2, 1, 1), &points).unwrap();
    assert_eq!(t.num_classes(), 2);
    let (west, east) = (&t.cells[0], &t.cells[1]);
    assert!(
        west.geometric.lon < east.geometric.lon,
        "ordered west to east"
    );
    for (c, lon) in [(west, 15.5), (east, 16.5)] {
        assert!((c.geometric.lon - lon).abs() < 0.02, "{:?}", c.geometric);
        assert!((c.geometric.lat - 45.0).abs() < 0.02, "{:?}", c.geometric);
        assert!(c.is_true_centroid && c.clipped == c.geometric);
        assert!(
            (c.land_area_deg2 - 2.0).abs() < 0.02,
            "{}",
            c.land_area_deg2
        );
        let w = c.weighted.unwrap();
        assert!((w.lon - lon).abs() < 0.05 && (w.lat - 45.0).abs() < 0.05);
    }
    // The two regions share the bisector.
    assert!(
        (west.bounds.max_lon - 16.0).abs() < 0.01,
        "{:?}",
        west.bounds
    );
}

#[test]
fn an_off_land_cluster_centroid_is_clipped_onto_land_in_its_cell() {
    // Croatia's coastal clusters have land centroids at sea.
    let hr = Boundary::from_iso("HR").unwrap();
    let points = hr_points(3000, 3);
    let t = classes(&hr, &clusters(60, 4, 1), &points).unwrap();
    let proj = projection("EPSG:3766").unwrap();
    let mut off = 0;
    for c in &t.cells {
        if c.is_true_centroid {
            assert_eq!(c.clipped, c.geometric);
            assert!(hr.contains(c.geometric.lat, c.geometric.lon));
            continue;
        }
        off += 1;
        assert!(!hr.contains(c.geometric.lat, c.geometric.lon));
        let (lat, lon) = hr.nearest_point(c.clipped.lat, c.clipped.lon);
        assert!((lat - c.clipped.lat).abs() < 1e-7 && (lon - c.clipped.lon).abs() < 1e-7);
        // Inside the cell, in the projected plane where the cell is convex.
        let mut xy = [(c.clipped.lon, c.clipped.lat)];
        proj.forward(&mut xy).unwrap();
        let mut outline = c.outline.clone();
        outline.push(outline[0]);
        proj.forward(&mut outline).unwrap();
        let region = outline
            .windows(2)
            .fold(Convex::rect([-1e9, -1e9, 1e9, 1e9]), |r, w| {
                r.cut(w[0], (w[1].1 - w[0].1, w[0].0 - w[1].0))
            });
        assert!(
            region.dist2(xy[0], 1.0) < 1.0,
            "{:?} outside its cell",
            c.clipped
        );
    }
    println!("{off} of {} cluster centroids were at sea", t.cells.len());
}

#[test]
fn cluster_errors_name_what_is_wrong() {
    let points = clump(45.0, 15.5, 5);
    match classes(&square(), &clusters(6, 1, 1), &points) {
        Err(GeoError::TooManyClusters { cells: 6, train: 5 }) => {}
        other => panic!("{other:?}"),
    }
    // Five train points, but only two distinct places.
    let mut twice = vec![pt(45.0, 15.5, true); 3];
    twice.extend(vec![pt(45.2, 15.7, true); 2]);
    assert!(matches!(
        classes(&square(), &clusters(3, 1, 1), &twice),
        Err(GeoError::TooManyClusters { .. })
    ));
    // A cluster far north of the boundary: its Voronoi region holds no land.
    let mut far = clump(45.0, 16.0, 10);
    far.extend(clump(48.0, 16.0, 10));
    match classes(&square(), &clusters(2, 1, 1), &far) {
        Err(e @ GeoError::ClusterWithoutLand { cluster: 1, .. }) => {
            assert!(e.to_string().contains("cluster 1"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    // No cell reaches min_locations.
    match classes(&square(), &quadtree(1.0, 100, 0.5, 50), &far) {
        Err(GeoError::NoClasses { min_locations: 50 }) => {}
        other => panic!("{other:?}"),
    }
}
