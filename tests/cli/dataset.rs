//! Bad datasets: each a clear error naming file and line or uuid, and nothing written.

use std::fs;

use crate::common::{TestEnv, dirs_experiment};

fn fails_cleanly(env: &TestEnv, needles: &[&str]) {
    let out = env.run(&["run", "exp.toml"]).expect(1);
    for n in needles {
        assert!(out.stderr.contains(n), "{n:?} not in:\n{}", out.stderr);
    }
    assert!(
        env.cache_entries("dataset").is_empty(),
        "no dataset entry may be committed"
    );
}

fn rewrite_csv(env: &TestEnv, dir: &str, edit: impl Fn(Vec<String>) -> Vec<String>) {
    let path = format!("data/{dir}/data.csv");
    let lines: Vec<String> = env.read(&path).lines().map(str::to_owned).collect();
    env.write(&path, &(edit(lines).join("\n") + "\n"));
}

#[test]
fn the_second_real_header_shape_loads() {
    let env = TestEnv::new();
    env.synth("a", 20, 1);
    rewrite_csv(&env, "a", |lines| {
        let mut out = vec![",Unnamed: 0,sample_longitude,sample_latitude,row_idx,status,radius,latitude,longitude,panorama_id,uuid".to_owned()];
        for (i, l) in lines.iter().skip(1).enumerate() {
            let c: Vec<&str> = l.split(',').collect();
            out.push(format!(
                "{i},{i},16.0,45.0,{i},OK,50,{},{},pano{i},{}",
                c[2], c[3], c[1]
            ));
        }
        out
    });
    env.write("exp.toml", &dirs_experiment(&["data/a"], ""));
    env.run(&["run", "exp.toml"]).expect(0);
}

#[test]
fn a_missing_column_is_named_with_the_columns_found() {
    let env = TestEnv::new();
    env.synth("a", 10, 1);
    rewrite_csv(&env, "a", |mut l| {
        l[0] = ",uuid,lat,longitude".into();
        l
    });
    env.write("exp.toml", &dirs_experiment(&["data/a"], ""));
    fails_cleanly(&env, &["data.csv", "no `latitude` column", "lat"]);
}

#[test]
fn an_out_of_range_latitude_names_file_line_and_uuid() {
    let env = TestEnv::new();
    env.synth("a", 10, 1);
    let mut uuid = String::new();
    rewrite_csv(&env, "a", |mut l| {
        let c: Vec<String> = l[3].split(',').map(str::to_owned).collect();
        l[3] = format!("{},{},95.0,{}", c[0], c[1], c[3]);
        l
    });
    let line = env
        .read("data/a/data.csv")
        .lines()
        .nth(3)
        .unwrap()
        .to_owned();
    uuid.push_str(line.split(',').nth(1).unwrap());
    env.write("exp.toml", &dirs_experiment(&["data/a"], ""));
    fails_cleanly(&env, &["data.csv:4", &uuid, "outside [-90, 90]"]);
}

#[test]
fn a_uuid_in_two_directories_names_both_places() {
    let env = TestEnv::new();
    env.synth("a", 10, 1);
    env.synth("b", 10, 2);
    let dup = env
        .read("data/a/data.csv")
        .lines()
        .nth(1)
        .unwrap()
        .split(',')
        .nth(1)
        .unwrap()
        .to_owned();
    rewrite_csv(&env, "b", |mut l| {
        let c: Vec<String> = l[2].split(',').map(str::to_owned).collect();
        let old = c[1].clone();
        l[2] = format!("{},{dup},{},{}", c[0], c[2], c[3]);
        let images = env.path().join("data/b/images");
        fs::rename(images.join(&old), images.join(&dup)).unwrap();
        l
    });
    env.write("exp.toml", &dirs_experiment(&["data/a", "data/b"], ""));
    fails_cleanly(
        &env,
        &[&dup, "listed twice", "a/data.csv:2", "b/data.csv:3"],
    );
}

#[test]
fn missing_views_are_listed() {
    let env = TestEnv::new();
    env.synth("a", 10, 1);
    let uuid = env
        .read("data/a/data.csv")
        .lines()
        .nth(5)
        .unwrap()
        .split(',')
        .nth(1)
        .unwrap()
        .to_owned();
    fs::remove_file(env.path().join(format!("data/a/images/{uuid}/90.jpg"))).unwrap();
    env.write("exp.toml", &dirs_experiment(&["data/a"], ""));
    fails_cleanly(&env, &[&uuid, "missing 90", "lack view images"]);
}

#[test]
fn a_row_without_an_image_folder_names_line_and_uuid() {
    let env = TestEnv::new();
    env.synth("a", 10, 1);
    let uuid = env
        .read("data/a/data.csv")
        .lines()
        .nth(2)
        .unwrap()
        .split(',')
        .nth(1)
        .unwrap()
        .to_owned();
    fs::remove_dir_all(env.path().join(format!("data/a/images/{uuid}"))).unwrap();
    env.write("exp.toml", &dirs_experiment(&["data/a"], ""));
    fails_cleanly(&env, &["line 3", &uuid, "no image folder"]);
}

#[test]
fn image_folders_without_a_row_are_counted_not_fatal() {
    let env = TestEnv::new();
    env.synth("a", 30, 1);
    rewrite_csv(&env, "a", |mut l| {
        l.truncate(l.len() - 2);
        l
    });
    env.write("exp.toml", &dirs_experiment(&["data/a"], ""));
    let out = env.run(&["run", "exp.toml"]).expect(0);
    assert!(
        out.stderr.contains("2 image folder(s) have no row"),
        "{}",
        out.stderr
    );
    let manifest = fs::read_to_string(env.run_dir("t").join("manifest.toml")).unwrap();
    assert!(
        manifest.contains("unreferenced_image_folders = 2"),
        "{manifest}"
    );
}

#[test]
fn a_dataset_dir_without_data_csv_is_named() {
    let env = TestEnv::new();
    fs::create_dir_all(env.path().join("data/empty/images")).unwrap();
    env.write("exp.toml", &dirs_experiment(&["data/empty"], ""));
    let out = env.run(&["run", "exp.toml"]).expect(2);
    assert!(
        out.stderr.contains("data/empty") && out.stderr.contains("no data.csv"),
        "{}",
        out.stderr
    );
}

#[test]
fn views_and_data_csv_that_are_not_files_say_what_they_are() {
    let env = TestEnv::new();
    env.synth("a", 10, 1);
    let uuids: Vec<String> = env
        .read("data/a/data.csv")
        .lines()
        .skip(1)
        .take(3)
        .map(|l| l.split(',').nth(1).unwrap().to_owned())
        .collect();
    let view = |i: usize, h: &str| {
        env.path()
            .join(format!("data/a/images/{}/{h}.jpg", uuids[i]))
    };
    fs::remove_file(view(0, "0")).unwrap();
    std::os::unix::fs::symlink("nowhere.jpg", view(0, "0")).unwrap();
    fs::remove_file(view(1, "90")).unwrap();
    fs::create_dir(view(1, "90")).unwrap();
    fs::remove_file(view(2, "180")).unwrap();
    let fifo = std::ffi::CString::new(view(2, "180").to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo only creates a file.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    env.write("exp.toml", &dirs_experiment(&["data/a"], ""));
    fails_cleanly(
        &env,
        &[
            "missing 0 (0.jpg is a dangling symbolic link)",
            "missing 90 (90.jpg is a directory)",
            "missing 180 (180.jpg is a FIFO (named pipe))",
        ],
    );

    // data.csv as a directory.
    env.synth("b", 5, 2);
    fs::remove_file(env.path().join("data/b/data.csv")).unwrap();
    fs::create_dir(env.path().join("data/b/data.csv")).unwrap();
    env.write("exp.toml", &dirs_experiment(&["data/b"], ""));
    let out = env.run(&["run", "exp.toml"]).expect(2);
    assert!(
        out.stderr.contains("data.csv: is a directory, not a file"),
        "{}",
        out.stderr
    );
}
