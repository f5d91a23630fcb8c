//! `geoexp synth`.

use crate::common::TestEnv;

#[test]
fn the_same_seed_writes_the_same_dataset() {
    let env = TestEnv::new();
    env.synth("a", 15, 9);
    env.synth("b", 15, 9);
    assert_eq!(env.read("data/a/data.csv"), env.read("data/b/data.csv"));
    assert_eq!(env.read("data/a/data.csv").lines().count(), 16);
}

#[test]
fn an_existing_non_empty_folder_is_never_written_into() {
    let env = TestEnv::new();
    env.write("data/a/keep.txt", "precious");
    let out = env
        .run(&[
            "synth",
            "--out",
            "data/a",
            "--locations",
            "5",
            "--image-size",
            "16",
        ])
        .expect(2);
    assert!(out.stderr.contains("not empty"), "{}", out.stderr);
    assert_eq!(env.read("data/a/keep.txt"), "precious");
    assert!(!env.path().join("data/a/data.csv").exists());

    // A file in the way of the folder is named as such.
    env.write("afile", "x");
    let out = env
        .run(&["synth", "--out", "afile/x", "--locations", "5"])
        .expect(2);
    assert!(
        out.stderr
            .contains("afile is a file, so no folder can be made inside it"),
        "{}",
        out.stderr
    );
}
