//! Snapshots of what users read: help texts, `plan`, `diff`, `ls` and `sweep --dry-run`,
//! pinned whole in `snapshots/*.snap` so the output cannot drift unnoticed.
//!
//! A missing or changed snapshot fails the test. To accept a deliberate change, rerun with
//! `INSTA_UPDATE=always cargo test --test cli snapshots` (or `cargo insta review`), read every
//! changed `.snap`, and commit them; no `.snap.new` file may stay behind.
//!
//! Only what varies between runs or machines is redacted (see [`settings`]): run ids, cache
//! keys and hashes, durations, timestamps, the test's temporary folder, host names and pids.
//! Counts, config values and deterministic metrics stay, since pinning them is the point.

use std::path::Path;

use crate::common::{Run, TestEnv, golf_runs, synthetic_experiment};

/// Escapes `text` for use as a literal in a regex.
fn regex_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The insta settings every snapshot here is taken with: the filters that redact what
/// varies between runs or machines, for a test running in `dir`.
fn settings(dir: &Path) -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.set_omit_expression(true);
    s.set_prepend_module_to_snapshot(false);
    // The test's temporary folder, as given and as the OS resolves it (/private on macOS).
    let mut dirs = vec![dir.to_path_buf()];
    if let Ok(real) = dir.canonicalize()
        && real != dir
    {
        dirs.push(real);
    }
    for d in dirs {
        s.add_filter(&regex_literal(&d.to_string_lossy()), "[TMP]");
    }
    // Timestamps (RFC 3339 and `YYYY-MM-DD HH:MM:SS`), before the hex and duration rules.
    s.add_filter(
        r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?",
        "[TIMESTAMP]",
    );
    // Lock holders and similar: `pid 123 on host`, `host=…`, `pid=…`.
    s.add_filter(r"\bpid \d+ on \S+", "pid [PID] on [HOST]");
    s.add_filter(r"\bhost=\S+", "host=[HOST]");
    s.add_filter(r"\bpid([ =])\d+", "pid${1}[PID]");
    // This machine's name, where it cannot be mistaken for an ordinary word.
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let plain_word = host.len() < 8 && host.chars().all(|c| c.is_ascii_lowercase());
    if !host.is_empty() && !plain_word {
        s.add_filter(&format!(r"\b{}\b", regex_literal(&host)), "[HOST]");
    }
    // Hashes (blake3 digests, 64 hex digits) and 12-hex-digit run ids and cache keys. Digits
    // right after a `.` are the fraction of a number, not a hash, and are left alone (a
    // number with 12 or more digits before its point would not be, but none is printed).
    // The run-id placeholder is 12 characters wide, so tables stay aligned as printed.
    s.add_filter(r"(^|[^.\w])[0-9a-f]{13,}\b", "${1}[HASH]");
    s.add_filter(r"(^|[^.\w])[0-9a-f]{12}\b", "${1}[RUN-ID/KEY]");
    // Durations as `geoexp` prints them: `0.42s`, `12.3s`, `4m05s`.
    s.add_filter(r"\b(\d+\.\d+|\d+m\d{2})s\b", "[DURATION]");
    s
}

/// Runs `geoexp args` in `env` without colours, whatever the terminal or CI asks for.
fn run(env: &TestEnv, args: &[&str]) -> Run {
    let out = env
        .cmd(args)
        .env_remove("CLICOLOR_FORCE")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `geoexp args` in `env`, checks it exits with `code`, and snapshots its exit status,
/// stdout and stderr as snapshot `name` (the command, unredacted, is the snapshot's
/// description).
#[track_caller]
fn snapshot(env: &TestEnv, name: &str, args: &[&str], code: i32) {
    let out = run(env, args).expect(code);
    let text = format!(
        "exit: {}\n----- stdout -----\n{}----- stderr -----\n{}",
        out.code, out.stdout, out.stderr
    );
    let mut settings = settings(env.path());
    settings.set_description(format!("geoexp {}", args.join(" ")));
    settings.bind(|| insta::assert_snapshot!(name, text));
}

/// The subcommands `geoexp --help` lists, but `help` (which takes no `--help`).
fn subcommands(env: &TestEnv) -> Vec<String> {
    let top = run(env, &["--help"]).expect(0);
    let commands: Vec<String> = top
        .stdout
        .lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .map(|l| l.split_whitespace().next().unwrap().to_owned())
        .filter(|c| c != "help")
        .collect();
    assert!(commands.len() >= 11, "{}", top.stdout);
    commands
}

#[test]
fn help_of_geoexp_and_of_every_subcommand() {
    let env = TestEnv::new();
    snapshot(&env, "help", &["--help"], 0);
    for cmd in subcommands(&env) {
        snapshot(&env, &format!("help_{cmd}"), &[&cmd, "--help"], 0);
    }
}

#[test]
fn plan_before_a_run_all_cached_and_after_a_changed_training_value() {
    let env = TestEnv::new();
    env.write("exp.toml", &synthetic_experiment(40, ""));
    snapshot(&env, "plan_never_run", &["plan", "exp.toml"], 0);
    env.run(&["run", "exp.toml"]).expect(0);
    snapshot(&env, "plan_all_cached", &["plan", "exp.toml"], 0);
    snapshot(
        &env,
        "plan_changed_lr",
        &["plan", "exp.toml", "--set", "train.lr=3e-4"],
        0,
    );
}

#[test]
fn diff_of_two_runs_as_text_and_json() {
    let env = golf_runs();
    snapshot(
        &env,
        "diff_text",
        &["diff", "a1b2c3d4e5f6", "a1f0e9d8c7b6"],
        0,
    );
    snapshot(
        &env,
        "diff_json",
        &["diff", "a1b2c3d4e5f6", "a1f0e9d8c7b6", "--format", "json"],
        0,
    );
}

#[test]
fn ls_as_a_table_and_as_csv() {
    let env = golf_runs();
    snapshot(&env, "ls_table", &["ls"], 0);
    snapshot(&env, "ls_csv", &["ls", "--format", "csv"], 0);
}

#[test]
fn sweep_dry_run_of_a_two_by_two_grid() {
    let env = TestEnv::new();
    env.write(
        "exp.toml",
        &synthetic_experiment(
            40,
            "[sweep]\n\"train.lr\" = [1e-3, 3e-4]\n\"classes.spacing\" = [0.5, 0.7]\n",
        ),
    );
    snapshot(
        &env,
        "sweep_dry_run",
        &["sweep", "exp.toml", "--dry-run"],
        0,
    );
    assert!(
        !env.path().join("runs/t").exists(),
        "a dry run ran something"
    );
}

#[test]
fn the_filters_redact_what_varies_and_keep_numbers() {
    let env = TestEnv::new();
    let key = "22a0200d55a8e0f1".repeat(4);
    let text = format!(
        "run 28cc2ca98239 → runs/t/28cc2ca98239/manifest.toml\n\
         key {key} took 0.15s, 12.3s, 4m05s at 2026-12-02T10:42:44Z\n\
         host=node1 pid=99 in {}/runs\n\
         0.8666666666666667 18.912345 150 1e-3 -0.2857142857142857\n\
         locked by pid 4242 on builder-7\n",
        env.path().display()
    );
    settings(env.path()).bind(|| {
        insta::assert_snapshot!(text, @r"
        run [RUN-ID/KEY] → runs/t/[RUN-ID/KEY]/manifest.toml
        key [HASH] took [DURATION], [DURATION], [DURATION] at [TIMESTAMP]
        host=[HOST] pid=[PID] in [TMP]/runs
        0.8666666666666667 18.912345 150 1e-3 -0.2857142857142857
        locked by pid [PID] on [HOST]
        ");
    });
}
