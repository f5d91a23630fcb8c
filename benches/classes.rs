//! Benchmark of in-process class creation over Croatia.
//!
//! 100,000 points uniform on HR land (seeded rejection sampling, 80 % train), 0.1° cells,
//! proj4rs EPSG:3766. Times `create_classes` only (world data and points are prepared first),
//! reporting min and median over repeated runs after a warm-up; also times loading the
//! boundary and projecting 1M points. Target on a 2-core machine: ≤ 0.25 s per run
//! (the geopandas implementation takes 0.71 s).
//!
//! Then the three cell kinds on the same points: the 0.5° grid, a quadtree over it
//! (`max_locations` 1,000, `min_spacing` 0.05°) and 60 clusters. Targets on 2 cores: quadtree
//! ≤ 50 ms, clusters ≤ 150 ms.

use std::time::{Duration, Instant};

use geoexp::geo::{
    Boundary, CellScheme, CellSpec, CentroidMode, ClassPoint, create_classes, land_grid, projection,
};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

const N_POINTS: usize = 100_000;
const SPACING: f64 = 0.1;
const ITERATIONS: usize = 15;

fn points_on_land(boundary: &Boundary, n: usize, seed: u64) -> Vec<ClassPoint> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let b = boundary.bbox();
    let mut pts = Vec::with_capacity(n);
    while pts.len() < n {
        let lat = rng.random_range(b.min_lat..b.max_lat);
        let lon = rng.random_range(b.min_lon..b.max_lon);
        if boundary.contains(lat, lon) {
            let is_train = rng.random_bool(0.8);
            pts.push(ClassPoint { lat, lon, is_train });
        }
    }
    pts
}

fn summary(mut times: Vec<Duration>) -> (f64, f64) {
    times.sort();
    (times[0].as_secs_f64(), times[times.len() / 2].as_secs_f64())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let t = Instant::now();
    let hr = Boundary::from_iso("HR")?;
    let first_load = t.elapsed();
    let t = Instant::now();
    let _ = Boundary::from_iso("HR")?;
    let cached_load = t.elapsed();
    println!(
        "Boundary::from_iso(\"HR\"): first {:.1} ms (inflates world-data), then {:.2} ms",
        first_load.as_secs_f64() * 1e3,
        cached_load.as_secs_f64() * 1e3
    );

    let t = Instant::now();
    let points = points_on_land(&hr, N_POINTS, 42);
    println!(
        "sampled {} points on land in {:.1} ms",
        points.len(),
        t.elapsed().as_secs_f64() * 1e3
    );

    let proj = projection("EPSG:3766")?;
    let mut million: Vec<(f64, f64)> = points
        .iter()
        .cycle()
        .take(1_000_000)
        .map(|p| (p.lon, p.lat))
        .collect();
    let t = Instant::now();
    proj.forward(&mut million)?;
    println!(
        "projection(\"EPSG:3766\").forward on 1,000,000 points: {:.1} ms",
        t.elapsed().as_secs_f64() * 1e3
    );

    let table = create_classes(
        &hr,
        &CellSpec::grid(SPACING),
        &points,
        CentroidMode::Clipped,
        proj.as_ref(),
    )?;
    let mut times = Vec::with_capacity(ITERATIONS);
    for _ in 0..ITERATIONS {
        let t = Instant::now();
        let table = create_classes(
            &hr,
            &CellSpec::grid(SPACING),
            &points,
            CentroidMode::Clipped,
            proj.as_ref(),
        )?;
        times.push(t.elapsed());
        std::hint::black_box(table);
    }
    let (min, median) = summary(times);
    println!(
        "create_classes: {} points, spacing {SPACING}°, {} cells, {} classes, {} moved, {} without class",
        points.len(),
        table.cells.len(),
        table.num_classes(),
        table.moved,
        table.without_class
    );
    println!(
        "create_classes over {ITERATIONS} runs: min {:.1} ms, median {:.1} ms (target <= 250 ms) on {} threads",
        min * 1e3,
        median * 1e3,
        rayon::current_num_threads()
    );

    // Where the time goes: the grid alone, and projecting the 100k points alone.
    let mut grid_times = Vec::with_capacity(ITERATIONS);
    let mut proj_times = Vec::with_capacity(ITERATIONS);
    let lonlat: Vec<(f64, f64)> = points.iter().map(|p| (p.lon, p.lat)).collect();
    for _ in 0..ITERATIONS {
        let t = Instant::now();
        std::hint::black_box(land_grid(&hr, SPACING)?);
        grid_times.push(t.elapsed());
        let mut xy = lonlat.clone();
        let t = Instant::now();
        proj.forward(&mut xy)?;
        proj_times.push(t.elapsed());
    }
    let (grid_min, grid_median) = summary(grid_times);
    let (proj_min, proj_median) = summary(proj_times);
    println!(
        "  of which land_grid: min {:.1} ms, median {:.1} ms; projecting the points: min {:.1} ms, median {:.1} ms",
        grid_min * 1e3,
        grid_median * 1e3,
        proj_min * 1e3,
        proj_median * 1e3
    );

    println!("cell kinds on the same points (min / median over {ITERATIONS} runs):");
    let kinds = [
        CellScheme::Grid { spacing: 0.5 },
        CellScheme::Quadtree {
            spacing: 0.5,
            max_locations: 1000,
            min_spacing: 0.05,
        },
        CellScheme::Clusters { cells: 60, seed: 7 },
    ];
    for scheme in kinds {
        let spec = CellSpec {
            scheme,
            min_locations: 1,
        };
        let run = || create_classes(&hr, &spec, &points, CentroidMode::Clipped, proj.as_ref());
        let table = run()?;
        let mut times = Vec::with_capacity(ITERATIONS);
        for _ in 0..ITERATIONS {
            let t = Instant::now();
            std::hint::black_box(run()?);
            times.push(t.elapsed());
        }
        let (min, median) = summary(times);
        let mut per_class: Vec<usize> = table
            .class_cells
            .iter()
            .map(|&c| table.cells[c].n_train)
            .collect();
        per_class.sort_unstable();
        println!(
            "  {:<8} {:>4} classes, train per class {}/{}/{} (min/median/max): {:.1} / {:.1} ms  {scheme:?}",
            scheme.kind(),
            table.num_classes(),
            per_class[0],
            per_class[per_class.len() / 2],
            per_class[per_class.len() - 1],
            min * 1e3,
            median * 1e3,
        );
    }

    let t = Instant::now();
    let sea = hr.sea_edges();
    println!(
        "sea_edges: {} of the boundary's edges face the sea ({:.1} ms, first call builds the land index)",
        sea.len(),
        t.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}
