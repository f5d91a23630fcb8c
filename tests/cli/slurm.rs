//! `geoexp sweep --executor slurm` against a real Slurm controller.
//!
//! `scripts/slurm-local.sh start` (run by `.ci/run`) sets up a single-node cluster on this
//! machine. Where no controller answers, the test says so on stderr and passes: it cannot
//! check anything there, and the rest of the suite must still run on a laptop.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{TestEnv, synthetic_experiment};

const GRID: &str = "[sweep]\n\"train.lr\" = [1e-3, 3e-4]\n\"classes.spacing\" = [0.5, 0.7]\n";

/// Why Slurm cannot be used here, if it cannot.
fn slurm_unavailable() -> Option<String> {
    let out = match Command::new("sinfo").args(["-h", "-o", "%t"]).output() {
        Ok(out) => out,
        Err(e) => return Some(format!("sinfo cannot be started ({e})")),
    };
    if !out.status.success() {
        return Some(format!(
            "no Slurm controller answers: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let states = String::from_utf8_lossy(&out.stdout).into_owned();
    let usable = states
        .lines()
        .any(|s| matches!(s.trim().trim_end_matches('*'), "idle" | "mix" | "alloc"));
    (!usable).then(|| format!("no usable Slurm node (sinfo: {})", states.trim()))
}

/// The sweep id a submission printed, once it says it submitted a job.
fn submitted_sweep(stdout: &str) -> String {
    assert!(stdout.contains("submitted job"), "{stdout}");
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("sweep "))
        .and_then(|l| l.split(':').next())
        .unwrap()
        .to_owned()
}

/// Polls `sweep --status` until it says `done`; fails on a failed task or after ten minutes.
fn wait_for_status(env: &TestEnv, id: &str, done: &str) -> crate::common::Run {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let status = env.run(&["sweep", "--status", id]);
        if status.stdout.contains(done) {
            return status;
        }
        assert!(
            !status.stdout.contains("failed"),
            "a task failed:\n{}\n{}",
            status.stdout,
            status.stderr
        );
        assert!(
            Instant::now() < deadline,
            "the sweep did not finish in time:\n{}\n{}",
            status.stdout,
            status.stderr
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn a_two_by_two_sweep_runs_as_a_slurm_array_job_sharing_stages() {
    if let Some(why) = slurm_unavailable() {
        eprintln!(
            "SKIPPED slurm integration test: {why}; run scripts/slurm-local.sh start to enable it"
        );
        return;
    }
    let env = TestEnv::new();
    env.write("exp.toml", &synthetic_experiment(60, GRID));
    let out = env
        .run(&["sweep", "exp.toml", "--executor", "slurm", "--jobs", "2"])
        .expect(0);
    let id = submitted_sweep(&out.stdout);
    let status = wait_for_status(&env, &id, "4 trials: 4 ok");
    assert!(status.stdout.contains("slurm job"), "{}", status.stdout);
    let sweep = env.path().join("runs/sweeps").join(&id);
    let outputs = std::fs::read_dir(sweep.join("slurm")).unwrap().count();
    assert_eq!(outputs, 4, "one output file per array task");
    // Tasks ran side by side on the shared runs directory: still every stage once.
    assert_eq!(
        crate::sweep::stage_runs(&env.path().join("runs"), "t"),
        crate::sweep::expected_counts()
    );

    // Submitting again submits nothing: every trial is done.
    let again = env
        .run(&["sweep", "exp.toml", "--executor", "slurm"])
        .expect(0);
    assert!(
        again.stdout.contains("nothing to submit"),
        "{}",
        again.stdout
    );
}

#[test]
fn a_halving_sweep_runs_one_slurm_array_per_rung_with_the_local_promotions() {
    if let Some(why) = slurm_unavailable() {
        eprintln!(
            "SKIPPED slurm halving test: {why}; run scripts/slurm-local.sh start to enable it"
        );
        return;
    }
    let env = TestEnv::new();
    env.write("exp.toml", &synthetic_experiment(60, crate::sweep::HALVING));
    let set = ["--set", "train.epochs=4"];
    env.run(&["sweep", "exp.toml", set[0], set[1], "--runs-dir", "local"])
        .expect(0);
    let out = env
        .run(&[
            "sweep",
            "exp.toml",
            set[0],
            set[1],
            "--executor",
            "slurm",
            "--jobs",
            "3",
        ])
        .expect(0);
    let id = submitted_sweep(&out.stdout);
    wait_for_status(&env, &id, "9 trials: 1 ok, 8 stopped");
    let sweep = env.path().join("runs/sweeps").join(&id);
    // Three arrays (9, 3 and 1 tasks) and two rung-closing jobs.
    let outputs: Vec<String> = std::fs::read_dir(sweep.join("slurm"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(outputs.len(), 9 + 3 + 1 + 2, "{outputs:?}");
    assert_eq!(
        outputs.iter().filter(|o| o.starts_with("rung_")).count(),
        2,
        "{outputs:?}"
    );
    assert_eq!(
        crate::sweep::summary(&env, "runs"),
        crate::sweep::summary(&env, "local")
    );
}
