//! `geoexp completions SHELL`: a completion script from the clap definitions, with the
//! experiment keys after `--set`/`--grid` and backbone names after `model.backbone=`.
//!
//! clap_complete writes the subcommands and flags; values of `--set KEY=VALUE` are free
//! text to it, so each shell's script gets a small function of its own that offers the
//! keys of [`crate::experiment::keys::KEYS`] (the table README's key reference comes from)
//! and the names of [`crate::vocab::BACKBONES`], both written into the script when it is
//! generated.

use std::io::Write;

use anyhow::Result;
use clap::CommandFactory;
use clap_complete::Shell;

use super::{Cli, Ctx, ExitStatus};

/// Print a shell completion script for bash, zsh or fish.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Install, for example:
  bash:  geoexp completions bash > ~/.local/share/bash-completion/completions/geoexp
  zsh:   geoexp completions zsh > ~/.zfunc/_geoexp   (with fpath+=~/.zfunc before compinit)
  fish:  geoexp completions fish > ~/.config/fish/completions/geoexp.fish

Besides subcommands and flags, the scripts complete experiment keys after --set and --grid \
(`--set train.l<TAB>` gives `train.lr=`) and backbone names after `model.backbone=`.")]
pub struct Args {
    /// The shell.
    #[arg(value_enum)]
    shell: CompletionShell,
}

/// The shells scripts are written for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CompletionShell {
    /// Bash 4.3 or later.
    Bash,
    /// Zsh.
    Zsh,
    /// Fish.
    Fish,
}

pub fn run(args: Args, _ctx: &Ctx) -> Result<ExitStatus> {
    let script = script(args.shell);
    let mut out = std::io::stdout().lock();
    out.write_all(script.as_bytes())?;
    out.flush()?;
    Ok(ExitStatus::Success)
}

/// The keys `--set` and `--grid` take: every documented key but the file-level ones.
pub fn settable_keys() -> Vec<&'static str> {
    crate::experiment::keys::KEYS
        .iter()
        .map(|k| k.path)
        .filter(|p| *p != "extends" && *p != "sweep" && !p.starts_with("sweep."))
        .collect()
}

/// The whole script for `shell`.
pub fn script(shell: CompletionShell) -> String {
    let mut cmd = Cli::command();
    let mut generated = Vec::new();
    let target = match shell {
        CompletionShell::Bash => Shell::Bash,
        CompletionShell::Zsh => Shell::Zsh,
        CompletionShell::Fish => Shell::Fish,
    };
    clap_complete::generate(target, &mut cmd, "geoexp", &mut generated);
    let generated = String::from_utf8_lossy(&generated).into_owned();
    let keys = settable_keys().join(" ");
    let backbones = crate::vocab::backbone_names().collect::<Vec<_>>().join(" ");
    match shell {
        CompletionShell::Bash => bash(&generated, &keys, &backbones),
        CompletionShell::Zsh => zsh(&generated, &keys, &backbones),
        CompletionShell::Fish => fish(&generated, &keys, &backbones),
    }
}

/// Bash splits words at `=` (COMP_WORDBREAKS), so the wrapper reads the line itself to
/// find the `--set` value being typed, then hands everything else to clap's function. Its
/// `complete` comes last, so it replaces the one clap's script registers.
fn bash(generated: &str, keys: &str, backbones: &str) -> String {
    let wrapper = BASH_WRAPPER
        .replace("@KEYS@", keys)
        .replace("@BACKBONES@", backbones);
    format!("{generated}\n{wrapper}")
}

const BASH_WRAPPER: &str = r#"_geoexp_keys='@KEYS@'
_geoexp_backbones='@BACKBONES@'

_geoexp_with_keys() {
    local line="${COMP_LINE:0:COMP_POINT}" cur prev
    local -a words
    read -r -a words <<< "$line"
    if [[ "$line" =~ [[:space:]]$ ]]; then
        cur=""; prev="${words[${#words[@]}-1]}"
    else
        cur="${words[${#words[@]}-1]}"; prev="${words[${#words[@]}-2]}"
    fi
    case "$prev" in
        --set|--grid)
            if [[ "$cur" == model.backbone=* ]]; then
                local value="${cur#model.backbone=}"
                if [[ "$COMP_WORDBREAKS" == *=* ]]; then
                    COMPREPLY=( $(compgen -W "$_geoexp_backbones" -- "$value") )
                else
                    COMPREPLY=( $(compgen -P model.backbone= -W "$_geoexp_backbones" -- "$value") )
                fi
            elif [[ "$cur" == *=* ]]; then
                COMPREPLY=()
            else
                COMPREPLY=( $(compgen -S = -W "$_geoexp_keys" -- "$cur") )
                compopt -o nospace 2>/dev/null
            fi
            return 0
            ;;
    esac
    _geoexp "$@"
}

if [[ "${BASH_VERSINFO[0]}" -eq 4 && "${BASH_VERSINFO[1]}" -ge 4 || "${BASH_VERSINFO[0]}" -gt 4 ]]; then
    complete -F _geoexp_with_keys -o nosort -o bashdefault -o default geoexp
else
    complete -F _geoexp_with_keys -o bashdefault -o default geoexp
fi
"#;

/// Zsh: `--set` and `--grid` values go to `_geoexp_keys` instead of `_default`.
fn zsh(generated: &str, keys: &str, backbones: &str) -> String {
    let generated = generated
        .replace(":KEY=VALUE:_default", ":KEY=VALUE:_geoexp_keys")
        .replace(":KEY=V1,V2,...:_default", ":KEY=V1,V2,...:_geoexp_keys");
    let function = ZSH_FUNCTION
        .replace("@KEYS@", keys)
        .replace("@BACKBONES@", backbones);
    match generated.rfind("if [ \"$funcstack[1]\" = \"_geoexp\" ]") {
        Some(at) => format!("{}{function}{}", &generated[..at], &generated[at..]),
        None => format!("{generated}\n{function}"),
    }
}

const ZSH_FUNCTION: &str = r#"_geoexp_keys() {
    local -a keys backbones
    keys=(@KEYS@)
    backbones=(@BACKBONES@)
    if compset -P 'model.backbone='; then
        compadd -a backbones
    elif compset -P '*='; then
        _message 'value'
    else
        compadd -S '=' -a keys
    fi
}

"#;

/// Fish: `--set` and `--grid` get their values from `__geoexp_keys`.
fn fish(generated: &str, keys: &str, backbones: &str) -> String {
    let lines: Vec<String> = generated
        .lines()
        .map(|line| {
            if line.contains(" -l set ") || line.contains(" -l grid ") {
                format!("{line} -f -a '(__geoexp_keys)'")
            } else {
                line.to_owned()
            }
        })
        .collect();
    let function = FISH_FUNCTION
        .replace("@KEYS@", keys)
        .replace("@BACKBONES@", backbones);
    format!("{function}\n{}\n", lines.join("\n"))
}

const FISH_FUNCTION: &str = r#"function __geoexp_keys
    set -l token (commandline -ct)
    if string match -q -- 'model.backbone=*' $token
        for b in @BACKBONES@
            echo model.backbone=$b
        end
    else if string match -q -- '*=*' $token
        return
    else
        for k in @KEYS@
            echo $k=
        end
    end
end
"#;
