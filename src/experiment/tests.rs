//! Loading and validation, layer by layer, with the errors a tired user would meet.

use std::fs;
use std::path::{Path, PathBuf};

use super::*;
use crate::vocab::Kernels;

const SYNTH: &str = "[dataset]\nsynthetic = { locations = 50 }\n";

struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Files {
        Files {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(&path, text).unwrap();
        path
    }
}

fn load_with(file: &Path, sets: &[&str], env: &[(&str, &str)]) -> Result<Loaded, ConfigErrors> {
    load(&LoadOptions {
        file: file.to_path_buf(),
        sets: sets.iter().map(|s| (*s).to_owned()).collect(),
        env: Some(
            env.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        ),
        trial: Vec::new(),
    })
}

fn error_text(file: &Path, sets: &[&str], env: &[(&str, &str)]) -> String {
    match load_with(file, sets, env) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_minimal_file_gets_the_defaults_and_its_file_name() {
    let f = Files::new();
    let path = f.write("golf.toml", SYNTH);
    let loaded = load_with(&path, &[], &[]).unwrap();
    let e = &loaded.experiment;
    assert_eq!(e.name, "golf");
    assert_eq!(e.classes.spacing, 0.5);
    assert_eq!(e.dataset.synthetic.as_ref().unwrap().locations, 50);
    assert_eq!(e.dataset.synthetic.as_ref().unwrap().image_size, 64);
    assert_eq!(loaded.provenance()["classes.spacing"], "default");
}

#[test]
fn layers_apply_in_order_defaults_base_file_env_set() {
    let f = Files::new();
    f.write(
        "base/base.toml",
        &format!("{SYNTH}[classes]\nspacing = 0.3\n[train]\nlr = 1e-3\nepochs = 3\n"),
    );
    let path = f.write(
        "exp.toml",
        "extends = \"base/base.toml\"\nname = \"x\"\n[train]\nlr = 5e-4\nbatch_size = 8\n",
    );
    let loaded = load_with(
        &path,
        &["train.batch_size=4"],
        &[
            ("GEOEXP_TRAIN__BATCH_SIZE", "2"),
            ("GEOEXP_TRAIN__EPOCHS", "5"),
        ],
    )
    .unwrap();
    let t = &loaded.experiment.train;
    assert_eq!(loaded.experiment.classes.spacing, 0.3);
    assert_eq!(t.lr, 5e-4);
    assert_eq!(t.epochs, 5);
    assert_eq!(t.batch_size, 4);
    let p = loaded.provenance();
    assert!(p["classes.spacing"].ends_with("base.toml"), "{p:?}");
    assert!(p["train.lr"].ends_with("exp.toml"));
    assert_eq!(p["train.epochs"], "env GEOEXP_TRAIN__EPOCHS");
    assert_eq!(p["train.batch_size"], "--set train.batch_size=4");
}

#[test]
fn tool_settings_in_the_environment_are_not_experiment_keys() {
    let f = Files::new();
    let path = f.write("e.toml", SYNTH);
    let loaded = load_with(
        &path,
        &[],
        &[("GEOEXP_SERVE_PORT", "8098"), ("GEOEXP_SEED", "9")],
    )
    .unwrap();
    assert_eq!(loaded.experiment.seed, 9);
}

#[test]
fn an_extends_cycle_is_an_error_naming_the_chain() {
    let f = Files::new();
    f.write("a.toml", "extends = \"b.toml\"\n");
    let b = f.write("b.toml", "extends = \"a.toml\"\n");
    let msg = error_text(&b, &[], &[]);
    assert!(msg.contains("cycle"), "{msg}");
    assert!(msg.contains("a.toml") && msg.contains("b.toml"), "{msg}");
    // The chain in the order the files name each other.
    f.write("c1.toml", "extends = \"c2.toml\"\n");
    f.write("c2.toml", "extends = \"c3.toml\"\n");
    let c3 = f.write("c3.toml", "extends = \"c1.toml\"\n");
    let msg = error_text(&c3, &[], &[]);
    let names = |m: &str| {
        m.rsplit(": ")
            .next()
            .unwrap()
            .split(" → ")
            .map(|p| p.rsplit('/').next().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(&msg),
        ["c3.toml", "c1.toml", "c2.toml", "c3.toml"],
        "{msg}"
    );
}

#[test]
fn a_problem_with_a_default_names_the_experiment_file() {
    let f = Files::new();
    let empty = f.write("empty.toml", "");
    let msg = error_text(&empty, &[], &[]);
    assert!(
        msg.starts_with(&format!("{}: key `dataset.dirs`", empty.display()))
            || msg.contains("empty.toml: key `dataset.dirs`"),
        "{msg}"
    );
    assert!(!msg.contains("default:"), "{msg}");
    let bad_name = f.write("my exp.toml", SYNTH);
    let msg = error_text(&bad_name, &[], &[]);
    assert!(msg.contains("my exp.toml: key `name`"), "{msg}");
}

#[test]
fn extends_reads_only_regular_files_of_a_sane_size() {
    let f = Files::new();
    let e = f.write("e.toml", "extends = \"/dev/zero\"\n");
    let msg = error_text(&e, &[], &[]);
    assert!(
        msg.contains("e.toml:1:") && msg.contains("not a regular file"),
        "{msg}"
    );
    f.write("big.toml", &"# padding\n".repeat(200_000));
    let e = f.write("e2.toml", "extends = \"big.toml\"\n");
    let msg = error_text(&e, &[], &[]);
    assert!(msg.contains("an experiment file may have at most"), "{msg}");
}

#[test]
fn a_missing_base_file_names_the_file_and_line_that_extends_it() {
    let f = Files::new();
    let path = f.write("e.toml", "name = \"e\"\nextends = \"nope.toml\"\n");
    let msg = error_text(&path, &[], &[]);
    assert!(msg.contains("e.toml:2:"), "{msg}");
    assert!(msg.contains("nope.toml"), "{msg}");
}

#[test]
fn an_unknown_key_names_file_line_and_a_suggestion() {
    let f = Files::new();
    let path = f.write("e.toml", &format!("{SYNTH}[classes]\nspcing = 0.3\n"));
    let msg = error_text(&path, &[], &[]);
    assert!(msg.contains("e.toml:4:1"), "{msg}");
    assert!(msg.contains("unknown key `classes.spcing`"), "{msg}");
    assert!(msg.contains("did you mean `classes.spacing`?"), "{msg}");
}

#[test]
fn a_key_in_the_wrong_section_points_to_the_right_one() {
    let f = Files::new();
    let path = f.write("e.toml", &format!("{SYNTH}[train]\nspacing = 0.3\n"));
    let msg = error_text(&path, &[], &[]);
    assert!(msg.contains("did you mean `classes.spacing`?"), "{msg}");
}

#[test]
fn a_wrong_type_names_file_line_key_and_expected_type() {
    let f = Files::new();
    let path = f.write(
        "e.toml",
        &format!("{SYNTH}[train]\nepochs = 3\nlr = \"fast\"\n"),
    );
    let msg = error_text(&path, &[], &[]);
    assert!(msg.contains("e.toml:5:"), "{msg}");
    assert!(msg.contains("train.lr"), "{msg}");
    assert!(msg.contains("expected f64"), "{msg}");
}

#[test]
fn the_sweeps_folder_name_is_reserved() {
    let f = Files::new();
    let path = f.write("e.toml", &format!("name = \"sweeps\"\n{SYNTH}"));
    let msg = error_text(&path, &[], &[]);
    assert!(msg.contains("e.toml:1:"), "{msg}");
    assert!(msg.contains("\"sweeps\" is reserved"), "{msg}");
    // A file named sweeps.toml without a name gets the same answer.
    let path = f.write("sweeps.toml", SYNTH);
    assert!(error_text(&path, &[], &[]).contains("reserved"));
}

#[test]
fn a_toml_syntax_error_names_the_line() {
    let f = Files::new();
    let path = f.write("e.toml", "name = \"x\"\n[train\n");
    let msg = error_text(&path, &[], &[]);
    assert!(msg.contains("e.toml:2:"), "{msg}");
    assert!(msg.contains("invalid TOML"), "{msg}");
}

#[test]
fn overrides_with_unknown_keys_or_bad_values_name_the_flag_or_variable() {
    let f = Files::new();
    let path = f.write("e.toml", SYNTH);
    let msg = error_text(&path, &["train.lrr=1"], &[]);
    assert!(msg.contains("--set train.lrr=1"), "{msg}");
    assert!(msg.contains("did you mean `train.lr`?"), "{msg}");
    let msg = error_text(&path, &[], &[("GEOEXP_CLASES__SPACING", "1")]);
    assert!(msg.contains("GEOEXP_CLASES__SPACING"), "{msg}");
    assert!(msg.contains("did you mean `classes"), "{msg}");
    let msg = error_text(&path, &["train.epochs=many"], &[]);
    assert!(msg.contains("--set train.epochs=many"), "{msg}");
    assert!(msg.contains("train.epochs"), "{msg}");
    let msg = error_text(&path, &["train.lr"], &[]);
    assert!(msg.contains("key.path=value"), "{msg}");
}

#[test]
fn out_of_range_values_are_rejected_with_their_origin() {
    let f = Files::new();
    let path = f.write("e.toml", &format!("{SYNTH}[classes]\nspacing = -0.5\n"));
    let msg = error_text(&path, &[], &[]);
    assert!(msg.contains("e.toml:4:1"), "{msg}");
    assert!(
        msg.contains("classes.spacing") && msg.contains("> 0"),
        "{msg}"
    );

    let path = f.write("e2.toml", SYNTH);
    for (set, needle) in [
        ("classes.spacing=0", "classes.spacing"),
        ("dataset.fraction=0", "dataset.fraction"),
        ("dataset.fraction=1.5", "dataset.fraction"),
        ("dataset.split.val=-0.1", "dataset.split.val"),
        ("dataset.split.val=0.2", "sum to 1"),
        ("train.device=gpu", "train.device"),
        ("model.backbone=resnet19", "did you mean `resnet18`?"),
        ("train.unfreeze_epoch=99", "train.unfreeze_epoch"),
    ] {
        let msg = error_text(&path, &[set], &[]);
        assert!(msg.contains(needle), "{set}: {msg}");
    }
}

#[test]
fn split_fractions_may_differ_from_one_by_floating_point_noise_only() {
    let f = Files::new();
    let path = f.write(
        "e.toml",
        &format!("{SYNTH}[dataset.split]\ntrain = 0.7\nval = 0.2\ntest = 0.1\n"),
    );
    assert!(load_with(&path, &[], &[]).is_ok());
    let msg = error_text(&path, &["dataset.split.test=0.1000001"], &[]);
    assert!(msg.contains("sum to 1"), "{msg}");
}

#[test]
fn dataset_dirs_resolve_against_the_file_that_names_them() {
    let f = Files::new();
    fs::create_dir_all(f.dir.path().join("base/data/set1")).unwrap();
    f.write("base/base.toml", "[dataset]\ndirs = [\"data/set1\"]\n");
    let path = f.write("exp/e.toml", "extends = \"../base/base.toml\"\n");
    let loaded = load_with(&path, &[], &[]).unwrap();
    let dir = loaded.resolve_path("dataset.dirs", &loaded.experiment.dataset.dirs[0]);
    assert!(dir.is_dir(), "{}", dir.display());

    let path = f.write("exp/missing.toml", "[dataset]\ndirs = [\"nowhere\"]\n");
    let msg = error_text(&path, &[], &[]);
    assert!(msg.contains("missing.toml:2:1"), "{msg}");
    assert!(
        msg.contains("nowhere") && msg.contains("does not exist"),
        "{msg}"
    );
}

#[test]
fn no_dataset_or_two_datasets_is_an_error() {
    let f = Files::new();
    let path = f.write("e.toml", "name = \"x\"\n");
    assert!(error_text(&path, &[], &[]).contains("dataset.synthetic"));
    fs::create_dir_all(f.dir.path().join("d")).unwrap();
    let path = f.write("e2.toml", &format!("{SYNTH}dirs = [\"d\"]\n"));
    assert!(error_text(&path, &[], &[]).contains("both"));
}

#[test]
fn a_later_layer_choosing_dirs_replaces_a_base_synthetic_dataset() {
    let f = Files::new();
    fs::create_dir_all(f.dir.path().join("d")).unwrap();
    f.write("base.toml", SYNTH);
    let path = f.write(
        "e.toml",
        "extends = \"base.toml\"\n[dataset]\ndirs = [\"d\"]\n",
    );
    let loaded = load_with(&path, &[], &[]).unwrap();
    assert!(loaded.experiment.dataset.synthetic.is_none());
    let back = load_with(&path, &["dataset.synthetic.locations=10"], &[]).unwrap();
    assert!(back.experiment.dataset.dirs.is_empty());
    assert_eq!(back.experiment.dataset.synthetic.unwrap().locations, 10);
}

#[test]
fn scheduler_fields_that_the_kind_does_not_read_are_rejected() {
    let f = Files::new();
    let path = f.write(
        "e.toml",
        &format!("{SYNTH}[train]\nscheduler = {{ kind = \"cosine\", patience = 3 }}\n"),
    );
    let msg = error_text(&path, &[], &[]);
    assert!(msg.contains("train.scheduler.patience"), "{msg}");
    assert!(msg.contains("cosine"), "{msg}");
}

#[test]
fn a_later_layer_can_change_the_scheduler_kind_and_leaves_the_old_fields_behind() {
    let f = Files::new();
    f.write(
        "base.toml",
        &format!(
            "{SYNTH}[train]\nscheduler = {{ kind = \"plateau\", factor = 0.3, patience = 5 }}\n"
        ),
    );
    let child = f.write(
        "child.toml",
        "extends = \"base.toml\"\n[train]\nscheduler = { kind = \"cosine\" }\n",
    );
    let fresh = f.write(
        "fresh.toml",
        &format!("{SYNTH}[train]\nscheduler = {{ kind = \"cosine\" }}\n"),
    );
    let scheduler = |l: &Loaded| l.experiment.train.scheduler.clone();
    let by_file = load_with(&child, &[], &[]).unwrap();
    let by_set = load_with(
        &f.dir.path().join("base.toml"),
        &["train.scheduler.kind=\"cosine\""],
        &[],
    )
    .unwrap();
    let alone = load_with(&fresh, &[], &[]).unwrap();
    // The same experiment as writing cosine alone: the base's plateau fields are dropped.
    assert_eq!(scheduler(&by_file), scheduler(&alone));
    assert_eq!(scheduler(&by_set), scheduler(&alone));
    // A field for another kind set in the same layer as the kind is still an error.
    let msg = error_text(
        &child,
        &[
            "train.scheduler.kind=\"step\"",
            "train.scheduler.patience=4",
        ],
        &[],
    );
    assert!(msg.contains("train.scheduler.patience"), "{msg}");
}

#[test]
fn sweep_axes_must_be_known_keys_with_values_of_the_right_type() {
    let f = Files::new();
    let path = f.write(
        "e.toml",
        &format!("{SYNTH}[sweep]\n\"train.lr\" = [1e-3, 3e-4]\n\"classes.spacing\" = [0.5, 0.3]\n"),
    );
    let loaded = load_with(&path, &[], &[]).unwrap();
    assert_eq!(loaded.experiment.sweep.len(), 2);

    let path = f.write(
        "e2.toml",
        &format!("{SYNTH}[sweep]\n\"train.lrr\" = [1e-3]\n"),
    );
    let msg = error_text(&path, &[], &[]);
    assert!(msg.contains("did you mean `train.lr`?"), "{msg}");

    let path = f.write(
        "e3.toml",
        &format!("{SYNTH}[sweep]\n\"train.lr\" = [\"fast\"]\n"),
    );
    let msg = error_text(&path, &[], &[]);
    assert!(msg.contains("\"fast\""), "{msg}");

    let path = f.write("e4.toml", &format!("{SYNTH}[sweep]\n\"train.lr\" = []\n"));
    assert!(error_text(&path, &[], &[]).contains("must not be empty"));
}

#[test]
fn a_sweep_table_takes_zip_exclude_seeds_helpers_and_unquoted_dotted_keys() {
    let f = Files::new();
    let path = f.write(
        "e.toml",
        &format!(
            "{SYNTH}[sweep]\ntrain.lr = \"logspace(-4, -3, 2)\"\n\"train.batch_size\" = [8, 16]\n\
             \"classes.spacing\" = [0.5, 0.7]\nzip = [[\"train.lr\", \"train.batch_size\"]]\n\
             exclude = [{{ \"classes.spacing\" = 0.7, \"train.batch_size\" = 16 }}]\nseeds = 2\n"
        ),
    );
    let loaded = load_with(&path, &[], &[]).unwrap();
    let sweep = crate::experiment::sweep::Sweep::from_table(&loaded.experiment.sweep).unwrap();
    assert_eq!(
        sweep
            .points(loaded.experiment.seed, u64::MAX)
            .unwrap()
            .len(),
        6
    );

    let path = f.write("e2.toml", &format!("{SYNTH}[sweep]\ntrain.lrr = [1e-3]\n"));
    let msg = error_text(&path, &[], &[]);
    assert!(msg.contains("did you mean `train.lr`?"), "{msg}");
    assert!(msg.contains("e2.toml:"), "{msg}");

    let path = f.write(
        "e3.toml",
        &format!(
            "{SYNTH}[sweep]\n\"train.lr\" = [1e-3]\nzip = [[\"train.lr\", \"train.epochs\"]]\n"
        ),
    );
    let msg = error_text(&path, &[], &[]);
    assert!(
        msg.contains("sweep.zip[0]") && msg.contains("`train.epochs` is not a sweep axis"),
        "{msg}"
    );
}

#[test]
fn trial_values_override_every_layer_and_are_labelled_sweep() {
    let f = Files::new();
    let path = f.write("e.toml", &format!("{SYNTH}[train]\nlr = 1e-3\n"));
    let loaded = load(&LoadOptions {
        file: path,
        sets: vec!["train.lr=5e-4".into()],
        env: Some(Vec::new()),
        trial: vec![("train.lr".into(), serde_json::json!(3e-4))],
    })
    .unwrap();
    assert_eq!(loaded.experiment.train.lr, 3e-4);
    assert_eq!(loaded.provenance()["train.lr"], "sweep");
}

#[test]
fn several_problems_are_reported_together() {
    let f = Files::new();
    let path = f.write("e.toml", SYNTH);
    let msg = error_text(&path, &["classes.spacing=0", "dataset.fraction=2"], &[]);
    assert!(msg.contains("2 problems"), "{msg}");
}

#[test]
fn unfreeze_takes_all_or_a_block_count() {
    let f = Files::new();
    let path = f.write("e.toml", &format!("{SYNTH}[train]\nunfreeze = \"all\"\n"));
    let e = load_with(&path, &[], &[]).unwrap().experiment;
    assert_eq!(e.train.unfreeze, Unfreeze::All);
    let e = load_with(&path, &["train.unfreeze=3"], &[])
        .unwrap()
        .experiment;
    assert_eq!(e.train.unfreeze, Unfreeze::Last(3));
    let bad = f.write("b.toml", &format!("{SYNTH}[train]\nunfreeze = \"some\"\n"));
    let err = error_text(&bad, &[], &[]);
    assert!(err.contains("b.toml:4") && err.contains("\"all\""), "{err}");
    let err = error_text(&path, &["train.unfreeze=0"], &[]);
    assert!(err.contains("train.unfreeze"), "{err}");
}

#[test]
fn an_unknown_monitor_suggests_the_metric_meant() {
    let f = Files::new();
    let path = f.write(
        "e.toml",
        &format!("{SYNTH}[train]\nmonitor = \"val/haversine_mean\"\n"),
    );
    let err = error_text(&path, &[], &[]);
    assert!(
        err.contains("did you mean `val/haversine_km_mean`?"),
        "{err}"
    );
    // Accuracy needs classes, so regression cannot monitor it.
    let err = error_text(
        &path,
        &["model.task=\"regression\"", "train.monitor=\"val/acc\""],
        &[],
    );
    assert!(err.contains("\"val/acc\" is not a metric"), "{err}");
}

#[test]
fn classification_only_settings_are_refused_for_regression() {
    let f = Files::new();
    let path = f.write(
        "e.toml",
        &format!("{SYNTH}[model]\ntask = \"regression\"\n[train]\nlabel_smoothing = 0.1\n"),
    );
    let err = error_text(&path, &[], &[]);
    assert!(
        err.contains("train.label_smoothing") && err.contains("classification only"),
        "{err}"
    );
}

#[test]
fn train_kernels_default_to_fast_and_an_unknown_value_names_the_key_and_the_choices() {
    let f = Files::new();
    let path = f.write("e.toml", SYNTH);
    let loaded = load_with(&path, &[], &[]).unwrap();
    assert_eq!(loaded.experiment.train.kernels, Kernels::Fast);
    let loaded = load_with(&path, &["train.kernels=reference"], &[]).unwrap();
    assert_eq!(loaded.experiment.train.kernels, Kernels::Reference);

    let path = f.write("e2.toml", &format!("{SYNTH}[train]\nkernels = \"turbo\"\n"));
    let msg = error_text(&path, &[], &[]);
    assert!(msg.contains("e2.toml:4:"), "{msg}");
    assert!(msg.contains("train.kernels"), "{msg}");
    assert!(
        msg.contains("turbo") && msg.contains("fast") && msg.contains("reference"),
        "{msg}"
    );
}
