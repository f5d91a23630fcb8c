//! Config errors that say where: file and line, environment variable, or `--set` flag.

use std::fmt;
use std::path::PathBuf;

/// Where a config value (or a mistake) came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Built-in default.
    Default,
    /// An experiment file, with the 1-based line and column when known.
    File {
        /// The file.
        path: PathBuf,
        /// Line and column.
        position: Option<(usize, usize)>,
    },
    /// A `GEOEXP_*` environment variable.
    Env(String),
    /// A `--set key=value` flag, as typed.
    Set(String),
    /// A sweep trial's value, `key=value`.
    Sweep(String),
    /// A `--grid key=v1,v2` flag of `geoexp sweep`, as typed.
    Grid(String),
}

impl Origin {
    /// How provenance is shown in manifests: the source without line numbers, so adding a
    /// comment to a file does not change the manifest.
    pub fn label(&self) -> String {
        match self {
            Origin::Default => "default".into(),
            Origin::File { path, .. } => display_path(path),
            Origin::Env(var) => format!("env {var}"),
            Origin::Set(raw) => format!("--set {raw}"),
            Origin::Sweep(_) => "sweep".into(),
            Origin::Grid(raw) => format!("--grid {raw}"),
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File {
                path,
                position: Some((line, col)),
            } => write!(f, "{}:{line}:{col}", display_path(path)),
            Origin::Env(var) => write!(f, "environment variable {var}"),
            Origin::Set(raw) => write!(f, "--set {raw}"),
            Origin::Sweep(raw) => write!(f, "sweep value {raw}"),
            Origin::Grid(raw) => write!(f, "--grid {raw}"),
            other => f.write_str(&other.label()),
        }
    }
}

/// A path relative to the working directory when it is under it, else as is.
pub fn display_path(path: &std::path::Path) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok().map(|p| p.display().to_string()))
        .unwrap_or_else(|| path.display().to_string())
}

/// What is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// The file could not be read.
    Read(String),
    /// TOML syntax error.
    Syntax(String),
    /// A key geoexp does not know.
    UnknownKey {
        /// The closest known key.
        suggestion: Option<&'static str>,
    },
    /// A value of the wrong type.
    Type(String),
    /// A value out of range or inconsistent with another.
    Invalid(String),
    /// `extends` chains back to a file already in the chain.
    ExtendsCycle(Vec<PathBuf>),
    /// A `--set` flag without `=`.
    BadSetFlag,
    /// An environment variable's name or value is not UTF-8.
    NotUtf8,
}

/// One config error, with where it happened and which key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// Where.
    pub origin: Origin,
    /// Which key, when one is at fault.
    pub key: Option<String>,
    /// What.
    pub kind: ConfigErrorKind,
}

impl ConfigError {
    /// An out-of-range or inconsistent value.
    pub fn invalid(origin: Origin, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            origin,
            key: Some(key.to_owned()),
            kind: ConfigErrorKind::Invalid(message.into()),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.origin)?;
        let key = self.key.as_deref().unwrap_or("?");
        match &self.kind {
            ConfigErrorKind::Read(e) => write!(f, "cannot read experiment file: {e}"),
            ConfigErrorKind::Syntax(e) => write!(f, "invalid TOML: {e}"),
            ConfigErrorKind::UnknownKey { suggestion } => {
                write!(f, "unknown key `{key}`")?;
                match suggestion {
                    Some(s) => write!(f, "; did you mean `{s}`?"),
                    None => write!(f, " (see the experiment-file reference in README.md)"),
                }
            }
            ConfigErrorKind::Type(e) => write!(f, "key `{key}`: {e}"),
            ConfigErrorKind::Invalid(e) => write!(f, "key `{key}`: {e}"),
            ConfigErrorKind::ExtendsCycle(chain) => {
                let names: Vec<String> = chain.iter().map(|p| display_path(p)).collect();
                write!(f, "`extends` forms a cycle: {}", names.join(" → "))
            }
            ConfigErrorKind::NotUtf8 => write!(f, "not valid UTF-8"),
            ConfigErrorKind::BadSetFlag => {
                write!(
                    f,
                    "expected `--set key.path=value` (e.g. `--set train.lr=3e-4`)"
                )
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// Every config error found, in file order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_slice() {
            [one] => write!(f, "{one}"),
            many => {
                write!(
                    f,
                    "{} problems in the experiment configuration:",
                    many.len()
                )?;
                for e in many {
                    write!(f, "\n  {e}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}
