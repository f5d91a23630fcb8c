//! Every command explains itself.

use crate::common::TestEnv;

#[test]
fn every_command_has_help() {
    let env = TestEnv::new();
    for (cmd, needle) in [
        ("run", "--until"),
        ("plan", "--set"),
        ("synth", "--locations"),
        ("ls", "--only-changed"),
        ("diff", "--exit-code"),
        ("verify", "--recompute"),
        ("cache", "referenced"),
        ("gc", "--keep-runs"),
        ("serve", "--max-megapixels"),
        ("predict", "--max-megapixels"),
    ] {
        let out = env.run(&[cmd, "--help"]).expect(0);
        assert!(out.stdout.contains(needle), "{cmd}: {}", out.stdout);
    }
    let top = env.run(&["--help"]).expect(0);
    for cmd in [
        "run", "plan", "synth", "ls", "diff", "verify", "cache", "gc",
    ] {
        assert!(top.stdout.contains(cmd), "{}", top.stdout);
    }
}
