//! `geoexp completions` and `geoexp man`: scripts that parse in their shell and complete
//! what they should, keys from the schema, man pages for every command.

use std::fs;
use std::process::Command;

use crate::common::TestEnv;

/// The keys a script must offer after `--set`: the schema's, less the file-level ones.
fn schema_keys() -> Vec<&'static str> {
    geoexp::experiment::keys::KEYS
        .iter()
        .map(|k| k.path)
        .filter(|p| *p != "extends" && *p != "sweep")
        .collect()
}

fn has(shell: &str) -> bool {
    Command::new(shell)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs `cmd`, which must succeed, and returns its stdout's lines.
fn stdout_lines(cmd: &mut Command) -> Vec<String> {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// What bash's completion offers for `line` (the cursor at its end), with the script
/// sourced as a user would.
fn bash_complete(script: &std::path::Path, line: &str) -> Vec<String> {
    let harness = r#"
source "$1"
COMP_LINE="$2"; COMP_POINT=${#COMP_LINE}
read -r -a COMP_WORDS <<< "$COMP_LINE"
COMP_CWORD=$((${#COMP_WORDS[@]}-1))
if [[ "$COMP_LINE" =~ [[:space:]]$ ]]; then COMP_WORDS+=(""); COMP_CWORD=$((COMP_CWORD+1)); fi
f=$(complete -p geoexp | sed -E 's/.*-F ([^ ]+).*/\1/')
"$f" geoexp "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
if [ ${#COMPREPLY[@]} -gt 0 ]; then printf '%s\n' "${COMPREPLY[@]}"; fi
"#;
    stdout_lines(
        Command::new("bash")
            .args(["-c", harness, "harness"])
            .arg(script)
            .arg(line),
    )
}

#[test]
fn bash_completes_subcommands_schema_keys_and_backbones() {
    let env = TestEnv::new();
    let script = env.run(&["completions", "bash"]).expect(0).stdout;
    let path = env.write("geoexp.bash", &script);
    stdout_lines(Command::new("bash").arg("-n").arg(&path));

    assert!(bash_complete(&path, "geoexp rep").contains(&"report".to_owned()));
    let mut train_l = bash_complete(&path, "geoexp run exp.toml --set train.l");
    train_l.sort();
    assert_eq!(train_l, ["train.label_smoothing=", "train.lr="]);
    let all = bash_complete(&path, "geoexp sweep exp.toml --grid ");
    let want: Vec<String> = schema_keys().iter().map(|k| format!("{k}=")).collect();
    assert_eq!(all, want, "every key of the schema, in its order");
    let backbones = bash_complete(&path, "geoexp run exp.toml --set model.backbone=resnet1");
    assert_eq!(backbones, ["resnet18", "resnet101", "resnet152"]);
    assert!(bash_complete(&path, "geoexp run exp.toml --set train.lr=3").is_empty());
}

#[test]
fn zsh_and_fish_scripts_parse_and_complete_keys() {
    let env = TestEnv::new();
    let zsh = env.run(&["completions", "zsh"]).expect(0).stdout;
    assert!(zsh.starts_with("#compdef geoexp"));
    assert!(zsh.contains(":KEY=VALUE:_geoexp_keys") && zsh.contains(":KEY=V1,V2,...:_geoexp_keys"));
    assert!(!zsh.contains(":KEY=VALUE:_default"));
    let keys_line = zsh
        .lines()
        .find(|l| l.trim_start().starts_with("keys=("))
        .unwrap();
    assert_eq!(
        keys_line.trim(),
        format!("keys=({})", schema_keys().join(" "))
    );
    let fish = env.run(&["completions", "fish"]).expect(0).stdout;
    assert_eq!(
        fish.matches("-f -a '(__geoexp_keys)'").count(),
        4,
        "run, plan, sweep --set; --grid"
    );

    if has("zsh") {
        let path = env.write("_geoexp", &zsh);
        stdout_lines(Command::new("zsh").arg("-n").arg(&path));
    } else {
        eprintln!("SKIPPED zsh completion check: zsh is not installed");
    }
    if has("fish") {
        let path = env.write("geoexp.fish", &fish);
        let complete = |line: &str| -> Vec<String> {
            let lines = stdout_lines(
                Command::new("fish")
                    .arg("--no-config")
                    .arg("-c")
                    .arg(format!("source {}; complete -C '{line}'", path.display())),
            );
            // Each line is `candidate<TAB>description`.
            lines
                .iter()
                .map(|l| l.split('\t').next().unwrap().to_owned())
                .collect()
        };
        let mut got = complete("geoexp run exp.toml --set train.l");
        got.sort();
        assert_eq!(got, ["train.label_smoothing=", "train.lr="]);
        let got = complete("geoexp run exp.toml --set model.backbone=resnet5");
        assert_eq!(got, ["model.backbone=resnet50"]);
        assert!(complete("geoexp rep").contains(&"report".to_owned()));
    } else {
        eprintln!("SKIPPED fish completion check: fish is not installed");
    }
}

#[test]
fn man_pages_cover_every_command() {
    let env = TestEnv::new();
    let page = env.run(&["man"]).expect(0).stdout;
    assert!(
        page.starts_with(".ie \\n(.g .ds Aq") || page.contains(".TH geoexp 1"),
        "{}",
        &page[..200.min(page.len())]
    );
    assert!(page.contains(".TH geoexp 1"));
    assert!(page.contains("report"));
    let out = env.run(&["man", "--dir", "man1"]).expect(0);
    let mut names: Vec<String> = fs::read_dir(env.path().join("man1"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(
        out.stdout
            .contains(&format!("{} manual pages", names.len())),
        "{}",
        out.stdout
    );
    for cmd in [
        "geoexp",
        "geoexp-run",
        "geoexp-report",
        "geoexp-completions",
        "geoexp-verify",
    ] {
        assert!(names.contains(&format!("{cmd}.1")), "{names:?}");
    }
    assert!(!names.contains(&"geoexp-help.1".to_owned()));
    let run = fs::read_to_string(env.path().join("man1/geoexp-run.1")).unwrap();
    assert!(
        run.contains(".TH geoexp-run 1") && run.contains("\\-\\-report"),
        "{run}"
    );
}
