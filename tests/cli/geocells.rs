//! `classes.kind`: quadtree and cluster cells end to end (classes.csv, cells.geojson, the
//! map, training, predict), the key checks, and plan's reasons in the new keys' terms.

use std::collections::BTreeMap;
use std::path::Path;

use crate::common::{
    TestEnv, assert_matches_evaluate, csv_rows, predict, predicted, synthetic_experiment,
};

/// The cells of a run as `cells.geojson` gives them: (cell, class, n_train, n_val, n_test,
/// outline).
type GeoCell = (usize, Option<usize>, [usize; 3], Vec<(f64, f64)>);

fn read_geojson(path: &Path) -> Vec<GeoCell> {
    let text = std::fs::read_to_string(path).unwrap();
    let fc: geojson::FeatureCollection = text.parse().unwrap();
    fc.features
        .into_iter()
        .map(|f| {
            let props = f.properties.unwrap();
            let int = |k: &str| props[k].as_u64().unwrap() as usize;
            let class = props["class"].as_u64().map(|c| c as usize);
            let geometry = f.geometry.unwrap();
            let geojson::GeometryValue::Polygon { coordinates } = geometry.value else {
                panic!("not a polygon: {geometry:?}");
            };
            assert_eq!(coordinates.len(), 1, "one ring");
            let ring = &coordinates[0];
            assert_eq!(ring.first(), ring.last(), "closed ring");
            let outline = ring[..ring.len() - 1]
                .iter()
                .map(|p| (p.as_slice()[0], p.as_slice()[1]))
                .collect();
            (
                int("cell"),
                class,
                [int("n_train"), int("n_val"), int("n_test")],
                outline,
            )
        })
        .collect()
}

fn signed_area(ring: &[(f64, f64)]) -> f64 {
    let n = ring.len();
    (0..n)
        .map(|i| {
            let (a, b) = (ring[i], ring[(i + 1) % n]);
            (a.0 - ring[0].0) * (b.1 - ring[0].1) - (b.0 - ring[0].0) * (a.1 - ring[0].1)
        })
        .sum::<f64>()
        / 2.0
}

/// cells.geojson agrees with classes.csv cell by cell, and rich_static.csv's locations add up
/// to its counts.
fn check_cells(run: &Path) -> Vec<GeoCell> {
    let cells = read_geojson(&run.join("classes/cells.geojson"));
    let rows = csv_rows(&run.join("classes/classes.csv"));
    assert_eq!(cells.len(), rows.len());
    let mut counts: BTreeMap<usize, [usize; 3]> = BTreeMap::new();
    for r in csv_rows(&run.join("classes/rich_static.csv")) {
        let split = ["train", "val", "test"]
            .iter()
            .position(|s| *s == r["split"])
            .unwrap();
        counts
            .entry(r["polygon_index"].parse().unwrap())
            .or_default()[split] += 1;
    }
    for ((cell, class, n, outline), row) in cells.iter().zip(&rows) {
        assert_eq!(cell.to_string(), row["cell"]);
        assert_eq!(
            class.map(|c| c.to_string()).unwrap_or_default(),
            row["class"]
        );
        assert_eq!(n[0].to_string(), row["n_train"]);
        assert_eq!(*n, counts.get(cell).copied().unwrap_or_default());
        assert!(signed_area(outline) > 0.0, "counter-clockwise, with area");
        let min_lon = outline.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
        assert!((min_lon - row["min_lon"].parse::<f64>().unwrap()).abs() < 1e-9);
    }
    let classes: Vec<usize> = cells.iter().filter_map(|c| c.1).collect();
    assert_eq!(
        classes,
        (0..classes.len()).collect::<Vec<_>>(),
        "dense, in cell order"
    );
    cells
}

#[test]
fn a_quadtree_run_splits_dense_squares_and_trains() {
    let env = TestEnv::new();
    env.write(
        "exp.toml",
        &synthetic_experiment(
            400,
            "[classes]\nkind = \"quadtree\"\nspacing = 1.0\nmax_locations = 40\nmin_spacing = 0.25\nmin_locations = 2\n",
        ),
    );
    env.run(&["run", "exp.toml"]).expect(0);
    let run = env.run_dir("t");
    let cells = check_cells(&run);
    let rows = csv_rows(&run.join("classes/classes.csv"));
    let sides: Vec<f64> = rows
        .iter()
        .map(|r| r["max_lon"].parse::<f64>().unwrap() - r["min_lon"].parse::<f64>().unwrap())
        .collect();
    assert!(
        sides.iter().any(|&s| s < 0.99),
        "something was split: {sides:?}"
    );
    assert!(
        sides.iter().all(|&s| s > 0.2499),
        "nothing below min_spacing"
    );
    for ((_, class, n, _), side) in cells.iter().zip(&sides) {
        // A square is split while it holds more than 40 train locations and may be halved.
        assert!(n[0] <= 40 || *side < 0.5, "{n:?} at {side}°");
        assert_eq!(class.is_some(), n[0] >= 2);
    }
    let manifest = env.read(&format!(
        "runs/t/{}/manifest.toml",
        run.file_name().unwrap().to_string_lossy()
    ));
    assert!(
        manifest.contains("\"classes.kind\" = \"quadtree\""),
        "{manifest}"
    );
    assert!(manifest.contains("\"classes.max_locations\" = 40"));
    assert!(manifest.contains("[stages.classes.outputs.\"cells.geojson\"]"));
}

#[test]
fn a_cluster_run_predicts_like_evaluate() {
    let env = TestEnv::new();
    env.synth("d", 80, 6);
    env.write(
        "exp.toml",
        "name = \"t\"\nseed = 2\n[dataset]\ndirs = [\"data/d\"]\n\
         [classes]\nkind = \"clusters\"\ncells = 6\n\
         [model]\nbackbone = \"tiny-cnn\"\n\
         [train]\nimage_size = 16\nbatch_size = 8\nepochs = 1\ndevice = \"cpu\"\n",
    );
    env.run(&["run", "exp.toml"]).expect(0);
    let run = env.run_dir("t");
    let cells = check_cells(&run);
    assert_eq!(cells.len(), 6);
    let centroids: Vec<f64> = csv_rows(&run.join("classes/classes.csv"))
        .iter()
        .map(|r| r["geometric_lon"].parse().unwrap())
        .collect();
    assert!(
        centroids.windows(2).all(|w| w[0] <= w[1] + 0.5),
        "roughly west to east"
    );
    let out = predict(&env, &run.to_string_lossy(), "data/d", &["--out", "p.csv"]);
    out.expect(0);
    assert_matches_evaluate(&run, &predicted(&env.path().join("p.csv")));
}

#[test]
fn grid_runs_write_cells_geojson_too() {
    let env = TestEnv::new();
    env.write(
        "exp.toml",
        &synthetic_experiment(120, "[classes]\nspacing = 0.7\n"),
    );
    env.run(&["run", "exp.toml", "--until", "classes"])
        .expect(0);
    let entry = env.cache_entries("classes");
    let dir = env.path().join("runs/.cache/classes").join(&entry[0]);
    let cells = read_geojson(&dir.join("cells.geojson"));
    assert_eq!(cells.len(), 36, "Croatia at 0.7°");
    for (_, _, _, outline) in &cells {
        assert_eq!(outline.len(), 4);
        assert!((signed_area(outline) - 0.49).abs() < 1e-9);
    }
}

fn fails(env: &TestEnv, args: &[&str], needles: &[&str]) {
    let out = env.run(args);
    assert_ne!(out.code, 0, "{}", out.stdout);
    for n in needles {
        assert!(out.stderr.contains(n), "{n:?} not in:\n{}", out.stderr);
    }
    assert!(
        env.cache_entries("dataset").is_empty(),
        "nothing ran:\n{}",
        out.stderr
    );
}

#[test]
fn bad_cell_keys_are_errors_naming_the_key_before_anything_runs() {
    let env = TestEnv::new();
    env.write(
        "exp.toml",
        &synthetic_experiment(100, "[classes]\nspacing = 0.5\n"),
    );
    fn run<'a>(sets: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec!["run", "exp.toml"];
        for s in sets {
            args.push("--set");
            args.push(s);
        }
        args
    }
    fails(
        &env,
        &run(&["classes.max_locations=50"]),
        &[
            "classes.max_locations",
            "only used with `classes.kind = \"quadtree\"`",
        ],
    );
    fails(
        &env,
        &run(&["classes.cells=10"]),
        &["classes.cells", "clusters"],
    );
    fails(
        &env,
        &run(&["classes.kind=clusters", "classes.min_spacing=0.1"]),
        &["classes.min_spacing", "quadtree"],
    );
    fails(
        &env,
        &run(&["classes.kind=quadtree", "classes.min_spacing=0.6"]),
        &["classes.min_spacing", "larger than classes.spacing"],
    );
    fails(
        &env,
        &run(&[
            "classes.kind=quadtree",
            "classes.max_locations=3",
            "classes.min_locations=5",
        ]),
        &[
            "classes.max_locations",
            "less than classes.min_locations = 5",
        ],
    );
    fails(
        &env,
        &run(&["classes.kind=clusters", "classes.cells=81"]),
        &["classes.cells", "only 80 train locations"],
    );
    fails(&env, &run(&["classes.kind=hexagons"]), &["classes.kind"]);
}

#[test]
fn more_clusters_than_real_train_locations_is_an_error_naming_the_key() {
    let env = TestEnv::new();
    env.synth("d", 30, 1);
    env.write(
        "exp.toml",
        "name = \"t\"\n[dataset]\ndirs = [\"data/d\"]\n[classes]\nkind = \"clusters\"\ncells = 25\n",
    );
    let out = env.run(&["run", "exp.toml"]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("classes.cells") && out.stderr.contains("24 training points"),
        "{}",
        out.stderr
    );
    assert!(env.cache_entries("classes").is_empty());
}

#[test]
fn plan_explains_a_rerun_by_the_quadtree_keys() {
    let env = TestEnv::new();
    env.write(
        "exp.toml",
        &synthetic_experiment(200, "[classes]\nkind = \"quadtree\"\nmax_locations = 30\n"),
    );
    env.run(&["run", "exp.toml", "--until", "classes"])
        .expect(0);
    let out = env
        .run(&["plan", "exp.toml", "--set", "classes.max_locations=20"])
        .expect(0);
    assert!(
        out.stdout.contains("classes.max_locations 30 → 20"),
        "{}",
        out.stdout
    );
    // The default written out is the same key: no rerun.
    let out = env
        .run(&["plan", "exp.toml", "--set", "classes.min_spacing=0.0625"])
        .expect(0);
    let classes_line = out
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("classes"))
        .unwrap();
    assert!(classes_line.contains("cached"), "{}", out.stdout);
}
