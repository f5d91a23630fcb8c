//! `geoexp report`, `run --report`, `sweep --report`: the pages' sections and values, read
//! back with an HTML parser, and the maps they embed.

use std::fs;
use std::path::Path;

use scraper::{ElementRef, Html, Selector};

use crate::common::{TestEnv, synthetic_experiment};

fn select<'a>(doc: &'a Html, css: &str) -> Vec<ElementRef<'a>> {
    doc.select(&Selector::parse(css).unwrap()).collect()
}

fn text(e: &ElementRef<'_>) -> String {
    e.text().collect::<String>().trim().to_owned()
}

/// The exact value (`data-value`) of cell `i` of a table row.
fn cell_value(tr: &ElementRef<'_>, i: usize) -> f64 {
    let td = tr.child_elements().nth(i).unwrap();
    td.value().attr("data-value").unwrap().parse().unwrap()
}

/// The ids of the page's sections, in order.
fn section_ids(doc: &Html) -> Vec<String> {
    select(doc, "section")
        .iter()
        .map(|s| s.value().attr("id").unwrap().to_owned())
        .collect()
}

/// The rows of table `id` as cell texts.
fn rows(doc: &Html, id: &str) -> Vec<Vec<String>> {
    select(doc, &format!("table#{id} tbody tr"))
        .iter()
        .map(|tr| tr.child_elements().map(|td| text(&td)).collect())
        .collect()
}

fn manifest(run_dir: &Path) -> toml::Table {
    toml::from_str(&fs::read_to_string(run_dir.join("manifest.toml")).unwrap()).unwrap()
}

/// Nothing that needs the network: no http(s) address in any src, href or CSS url.
fn assert_self_contained(html: &str) {
    for needle in [
        "src=\"http",
        "href=\"http",
        "url(http",
        "src='http",
        "@import",
    ] {
        assert!(
            !html.contains(needle),
            "the report refers to the network: {needle}"
        );
    }
}

#[test]
fn a_run_report_shows_every_section_with_the_manifests_values() {
    let env = TestEnv::new();
    env.write("exp.toml", &synthetic_experiment(80, ""));
    let out = env
        .run(&["run", "exp.toml", "--set", "train.epochs=2", "--report"])
        .expect(0);
    let run_dir = env.run_dir("t");
    let path = run_dir.join("report.html");
    assert!(
        out.stdout.contains(&format!(
            "report → {}",
            Path::new("runs/t")
                .join(run_dir.file_name().unwrap())
                .join("report.html")
                .display()
        )),
        "{}",
        out.stdout
    );
    let html = fs::read_to_string(&path).unwrap();
    assert_self_contained(&html);
    assert!(html.len() < 3_000_000, "{} bytes", html.len());
    let doc = Html::parse_document(&html);
    let m = manifest(&run_dir);
    let id = m["run"]["id"].as_str().unwrap();
    assert_eq!(text(&select(&doc, "h1")[0]), format!("t · run {id}"));
    let sections = section_ids(&doc);
    assert_eq!(
        sections,
        [
            "metrics", "stages", "curves", "maps", "classes", "worst", "config"
        ]
    );

    // Metrics: every final metric with its exact value.
    let evaluate = m["stages"]["evaluate"]["results"].as_table().unwrap();
    let metrics: Vec<ElementRef<'_>> = select(&doc, "table#metrics-table tbody tr");
    let value_of = |name: &str| -> f64 {
        let row = metrics
            .iter()
            .find(|tr| text(&tr.child_elements().next().unwrap()) == name)
            .unwrap_or_else(|| panic!("no metric {name}"));
        let td = row.child_elements().nth(1).unwrap();
        td.value().attr("data-value").unwrap().parse().unwrap()
    };
    for name in [
        "test/haversine_km_mean",
        "test/haversine_km_median",
        "test/acc",
    ] {
        assert_eq!(value_of(name), evaluate[name].as_float().unwrap(), "{name}");
    }
    let headline = select(&doc, r#"b[data-metric="test/haversine_km_mean"]"#);
    let mean = evaluate["test/haversine_km_mean"].as_float().unwrap();
    assert_eq!(text(&headline[0]), format!("{mean:.1} km"));

    // Stages: key, ran, time.
    let stages = rows(&doc, "stages-table");
    let names: Vec<&str> = stages.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(names, ["dataset", "classes", "images", "train", "evaluate"]);
    for row in &stages {
        let key = m["stages"][&row[0]]["key"].as_str().unwrap();
        assert_eq!(row[1], key[..12], "{row:?}");
        assert_eq!(row[2], "ran", "{row:?}");
        assert!(row[3].ends_with(" s"), "{row:?}");
    }

    // Curves: four charts; the loss chart has a line per split with a point per epoch.
    let charts = select(&doc, "#curves svg");
    assert_eq!(charts.len(), 4);
    let train_loss = select(&doc, r#"#curves polyline[data-series="train/loss"]"#);
    let points = train_loss[0].value().attr("points").unwrap();
    assert_eq!(points.split(' ').count(), 2, "{points}");
    assert_eq!(
        select(&doc, r#"#curves polyline[data-series="lr"]"#).len(),
        1
    );

    // Maps: three PNGs, their titles rewritten with the experiment and run.
    let maps = select(&doc, "#maps img");
    assert_eq!(maps.len(), 3);
    for img in &maps {
        assert!(
            img.value()
                .attr("src")
                .unwrap()
                .starts_with("data:image/png;base64,")
        );
    }

    // Per-class errors match cells.csv; the worst predictions come worst first, 4 views each.
    let cells = fs::read_to_string(run_dir.join("cells.csv")).unwrap();
    assert_eq!(rows(&doc, "classes-table").len(), cells.lines().count() - 1);
    let worst = select(&doc, "table#worst-table tbody tr");
    let predictions = fs::read_to_string(run_dir.join("predictions.csv")).unwrap();
    assert_eq!(worst.len(), (predictions.lines().count() - 1).min(12));
    let errors: Vec<f64> = worst.iter().map(|tr| cell_value(tr, 1)).collect();
    assert!(errors.windows(2).all(|w| w[0] >= w[1]), "{errors:?}");
    let largest = predictions
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(5).unwrap().parse::<f64>().unwrap())
        .fold(0.0, f64::max);
    assert_eq!(errors[0], largest);
    for tr in &worst {
        let thumbs: Vec<_> = tr
            .select(&Selector::parse("img.thumb").unwrap())
            .map(|i| i.value().attr("src").unwrap().to_owned())
            .collect();
        assert_eq!(thumbs.len(), 4);
        assert!(
            thumbs
                .iter()
                .all(|s| s.starts_with("data:image/jpeg;base64,"))
        );
    }

    // Config: every value, with where it came from; defaults marked.
    let config = rows(&doc, "config-table");
    let row = |key: &str| config.iter().find(|r| r[0] == key).unwrap().clone();
    assert_eq!(row("seed"), ["seed", "1", "exp.toml"]);
    assert_eq!(
        row("train.epochs"),
        ["train.epochs", "2", "--set train.epochs=2"]
    );
    assert_eq!(row("train.lr")[2], "default");
    assert!(!select(&doc, "table#config-table tr.default").is_empty());

    // Run again (all hits) and report by id prefix: the stages say so.
    env.run(&["run", "exp.toml", "--set", "train.epochs=2"])
        .expect(0);
    env.run(&["report", &id[..6]]).expect(0);
    let doc = Html::parse_document(&fs::read_to_string(&path).unwrap());
    assert!(rows(&doc, "stages-table").iter().all(|r| r[2] == "hit"));
}

#[test]
fn a_run_stopped_early_gets_the_sections_it_has() {
    let env = TestEnv::new();
    env.write("exp.toml", &synthetic_experiment(60, ""));
    env.run(&["run", "exp.toml", "--until", "classes"])
        .expect(0);
    env.run(&["report", "t/"]).expect(2);
    let run_dir = env.run_dir("t");
    env.run(&["report", run_dir.to_str().unwrap()]).expect(0);
    let doc = Html::parse_document(&fs::read_to_string(run_dir.join("report.html")).unwrap());
    let sections = section_ids(&doc);
    assert_eq!(sections, ["metrics", "stages", "maps", "config"]);
    assert_eq!(select(&doc, "#maps img").len(), 2);
}

#[test]
fn unknown_runs_and_sweeps_are_named_in_the_error() {
    let env = TestEnv::new();
    let out = env.run(&["report", "0ff1ce"]).expect(2);
    assert!(out.stderr.contains("0ff1ce"), "{}", out.stderr);
    let out = env.run(&["report", "--sweep", "beef"]).expect(2);
    assert!(out.stderr.contains("no sweep `beef`"), "{}", out.stderr);
    let out = env.run(&["report"]).expect(2);
    assert!(out.stderr.contains("--sweep"), "{}", out.stderr);
}

#[test]
fn a_sweep_report_ranks_trials_draws_the_heatmap_and_links_each_run_report() {
    let env = TestEnv::new();
    env.write("exp.toml", &synthetic_experiment(60, ""));
    let out = env
        .run(&[
            "sweep",
            "exp.toml",
            "--grid",
            "train.lr=1e-3,3e-3",
            "--grid",
            "classes.spacing=0.5,0.7",
            "--report",
        ])
        .expect(0);
    assert!(
        out.stdout.contains("4 run reports written"),
        "{}",
        out.stdout
    );
    let sweeps = env.path().join("runs/sweeps");
    let dir = fs::read_dir(&sweeps)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let html = fs::read_to_string(dir.join("report.html")).unwrap();
    assert_self_contained(&html);
    let doc = Html::parse_document(&html);
    let sections = section_ids(&doc);
    assert_eq!(sections, ["ranking", "heatmap", "parameters"]);

    let record: toml::Table =
        toml::from_str(&fs::read_to_string(dir.join("sweep.toml")).unwrap()).unwrap();
    let best = record["sweep"]["best"].as_str().unwrap();
    let ranking = rows(&doc, "ranking-table");
    assert_eq!(ranking.len(), 4);
    assert_eq!(ranking[0][1], best);
    assert!(ranking.iter().all(|r| r[2] == "ok"));
    let monitor: Vec<f64> = select(&doc, "table#ranking-table tbody tr")
        .iter()
        .map(|tr| cell_value(tr, 5))
        .collect();
    assert!(monitor.windows(2).all(|w| w[0] <= w[1]), "{monitor:?}");
    for link in select(&doc, "table#ranking-table a") {
        let href = link.value().attr("href").unwrap();
        assert!(href.ends_with("/report.html"), "{href}");
        assert!(dir.join(href).is_file(), "{href}");
    }

    // 2 × 2 cells, each the metric of the trial with those values.
    let heat = select(&doc, "table#heatmap-table td.heat");
    assert_eq!(heat.len(), 4);
    let values: Vec<f64> = heat
        .iter()
        .map(|td| td.value().attr("data-value").unwrap().parse().unwrap())
        .collect();
    let mut sorted_heat = values.clone();
    sorted_heat.sort_by(f64::total_cmp);
    assert_eq!(sorted_heat, monitor);

    // One scatter per swept key, a point per finished trial.
    let plots = select(&doc, "#parameters svg");
    assert_eq!(plots.len(), 2);
    for svg in plots {
        assert_eq!(
            svg.select(&Selector::parse("circle.point").unwrap())
                .count(),
            4
        );
    }
}

const HALVING: &str = "[sweep]\nmethod = \"grid\"\n\"train.lr\" = [1e-3, 2e-3, 3e-3]\n\
                       early_stop = { kind = \"halving\", min_epochs = 1, reduction = 3 }\n";

#[test]
fn a_halving_sweep_report_shows_its_rungs() {
    let env = TestEnv::new();
    env.write("exp.toml", &synthetic_experiment(60, HALVING));
    env.run(&["sweep", "exp.toml", "--set", "train.epochs=2", "--report"])
        .expect(0);
    let sweeps = env.path().join("runs/sweeps");
    let dir = fs::read_dir(&sweeps)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let html = fs::read_to_string(dir.join("report.html")).unwrap();
    let doc = Html::parse_document(&html);
    let sections = section_ids(&doc);
    assert_eq!(sections, ["ranking", "parameters", "rungs"]);
    // Rungs at 1 and 2 epochs: all three trials reach the first, one the second.
    assert_eq!(rows(&doc, "rungs-table"), [["1", "3"], ["2", "1"]]);
    let lines = select(&doc, "#rungs polyline.series");
    assert_eq!(lines.len(), 3);
    // Parameters against the value at the first rung: every trial has one.
    let plot = &select(&doc, "#parameters svg")[0];
    assert_eq!(
        plot.select(&Selector::parse("circle.point").unwrap())
            .count(),
        3
    );
    assert!(html.contains("val/haversine_km_mean at epoch 1"));
    let ranking = rows(&doc, "ranking-table");
    assert_eq!(ranking[0][2], "ok");
    assert!(
        ranking[1..].iter().all(|r| r[2] == "stopped"),
        "{ranking:?}"
    );
}

/// Whether any pixel in `rows` has colour `c`.
fn has_colour(img: &image::RgbImage, rows: std::ops::Range<u32>, c: [u8; 3]) -> bool {
    rows.flat_map(|y| (0..img.width()).map(move |x| (x, y)))
        .any(|(x, y)| img.get_pixel(x, y).0 == c)
}

/// The first row of the legend: below the lowest run of 20 blank rows above the last drawn
/// row (the margin between the map and its legend; rows of the legend are closer).
fn legend_top(img: &image::RgbImage) -> u32 {
    let blank = |y: u32| (0..img.width()).all(|x| img.get_pixel(x, y).0 == [255, 255, 255]);
    let bottom = (0..img.height())
        .rev()
        .find(|&y| !blank(y))
        .expect("an empty map");
    let mut run = 0;
    for y in (0..bottom).rev() {
        if blank(y) {
            run += 1;
            if run == 20 {
                return y + 20;
            }
        } else {
            run = 0;
        }
    }
    panic!("no margin between the map and its legend");
}

#[test]
fn the_run_folders_maps_carry_the_run_in_their_title_and_a_legend() {
    let env = TestEnv::new();
    env.write("exp.toml", &synthetic_experiment(60, ""));
    env.run(&["run", "exp.toml"]).expect(0);
    let run_dir = env.run_dir("t");
    let land = [225, 225, 225];
    let (train, val, test) = ([46, 139, 87], [255, 140, 0], [128, 0, 128]);
    let maps = [
        (
            "locations.png",
            "dataset/locations.png",
            vec![land, train, val, test],
        ),
        (
            "class_map.png",
            "classes/class_map.png",
            vec![land, train, [25, 25, 112], [255, 0, 0]],
        ),
        ("error_map.png", "evaluate/error_map.png", vec![land]),
    ];
    for (copy, entry, swatches) in maps {
        let titled = image::open(run_dir.join(copy)).unwrap().to_rgb8();
        let cached = image::open(run_dir.join(entry)).unwrap().to_rgb8();
        assert_eq!(titled.dimensions(), cached.dimensions(), "{copy}");
        let (w, h) = titled.dimensions();
        assert_eq!(w, 1200, "{copy}");
        assert!(h > 600, "{copy}: {h} px high");
        // The title band (the top 40 rows) differs; below it the pictures are the same.
        let differs = |y: u32| (0..w).any(|x| titled.get_pixel(x, y) != cached.get_pixel(x, y));
        assert!((0..40).any(differs), "{copy}: the title was not rewritten");
        assert!(!(40..h).any(differs), "{copy}: more than the title changed");
        // The legend under the map shows a swatch of every colour the map uses.
        let legend = legend_top(&titled)..h;
        assert!(h - legend.start > 60, "{copy}: no legend");
        for c in swatches {
            assert!(
                has_colour(&titled, legend.clone(), c),
                "{copy}: no {c:?} in the legend"
            );
        }
    }
    // The error map's ramp runs green to red.
    let errors = image::open(run_dir.join("error_map.png"))
        .unwrap()
        .to_rgb8();
    let h = errors.height();
    assert!(has_colour(&errors, h - 80..h, [0, 180, 40]), "ramp start");
    assert!(has_colour(&errors, h - 80..h, [220, 0, 40]), "ramp end");
}

#[test]
fn a_run_whose_entries_were_removed_still_gets_its_manifest_report() {
    let env = TestEnv::new();
    env.write("exp.toml", &synthetic_experiment(60, ""));
    env.run(&["run", "exp.toml"]).expect(0);
    let run_dir = env.run_dir("t");
    fs::remove_dir_all(env.path().join("runs/.cache")).unwrap();
    env.run(&["report", run_dir.to_str().unwrap()]).expect(0);
    let doc = Html::parse_document(&fs::read_to_string(run_dir.join("report.html")).unwrap());
    let sections = section_ids(&doc);
    // Everything the run folder keeps itself: curves, maps, errors; the views are gone.
    assert_eq!(
        sections,
        [
            "metrics", "stages", "curves", "maps", "classes", "worst", "config"
        ]
    );
    assert_eq!(select(&doc, "#maps img").len(), 3);
    assert_eq!(rows(&doc, "stages-table").len(), 5);
    assert!(select(&doc, "#worst img").is_empty());
}

#[test]
fn views_of_a_dataset_directory_are_found_from_the_experiment_file() {
    let env = TestEnv::new();
    env.synth("a", 60, 5);
    // The experiment lives in a subfolder, so `dirs` is relative to it, not to the cwd.
    env.write(
        "exps/exp.toml",
        &crate::common::dirs_experiment(&["../data/a"], ""),
    );
    env.run(&["run", "exps/exp.toml", "--report"]).expect(0);
    let run_dir = env.run_dir("t");
    let doc = Html::parse_document(&fs::read_to_string(run_dir.join("report.html")).unwrap());
    let worst = select(&doc, "table#worst-table tbody tr");
    assert!(!worst.is_empty());
    for tr in worst {
        let thumbs = tr.select(&Selector::parse("img.thumb").unwrap()).count();
        assert_eq!(thumbs, 4, "{}", tr.html());
    }
}

#[test]
fn a_regression_run_has_no_predicted_class_and_still_gets_its_report() {
    let env = TestEnv::new();
    env.write("exp.toml", &synthetic_experiment(60, ""));
    env.run(&[
        "run",
        "exp.toml",
        "--set",
        "model.task=regression",
        "--report",
    ])
    .expect(0);
    let run_dir = env.run_dir("t");
    let doc = Html::parse_document(&fs::read_to_string(run_dir.join("report.html")).unwrap());
    let worst = rows(&doc, "worst-table");
    assert!(!worst.is_empty());
    assert!(worst.iter().all(|r| r[5].is_empty()), "{worst:?}");
}
