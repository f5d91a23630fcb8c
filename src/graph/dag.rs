//! The run graph: stages in dependency order, and resolving them into keys.
//!
//! Keys depend only on declarations (params, input fingerprints, upstream keys), never on
//! outputs, so the whole graph resolves before anything runs: `plan` and the run id need
//! nothing more.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::error::GraphError;
use super::events::Reporter;
use super::fingerprint::Fingerprinter;
use super::key::{GEOEXP_VERSION, InputFingerprint, KeyMaterial, StageKey};
use super::stage::{Input, Stage};

/// Stages in an order where every stage comes after its upstream stages.
#[derive(Default)]
pub struct Graph {
    stages: Vec<Box<dyn Stage>>,
}

impl Graph {
    /// An empty graph.
    pub fn new() -> Graph {
        Graph::default()
    }

    /// Appends a stage; its upstream stages must already be in the graph.
    ///
    /// # Errors
    /// On a duplicate name or an unknown upstream stage (bugs in the graph builder).
    pub fn add(&mut self, stage: Box<dyn Stage>) -> Result<(), GraphError> {
        if self.index(stage.name()).is_some() {
            return Err(GraphError::Graph(format!(
                "stage `{}` added twice",
                stage.name()
            )));
        }
        if let Some(missing) = stage
            .upstream()
            .into_iter()
            .find(|u| self.index(u).is_none())
        {
            return Err(GraphError::Graph(format!(
                "stage `{}` depends on `{missing}`, which is not (yet) in the graph",
                stage.name()
            )));
        }
        self.stages.push(stage);
        Ok(())
    }

    /// Stage names in execution order.
    pub fn names(&self) -> Vec<&'static str> {
        self.stages.iter().map(|s| s.name()).collect()
    }

    /// The stage called `name`.
    pub fn stage(&self, name: &str) -> Option<&dyn Stage> {
        self.index(name).map(|i| self.stages[i].as_ref())
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.stages.iter().position(|s| s.name() == name)
    }

    /// The index of `name`, or an error listing the stages there are.
    fn existing(&self, name: &str) -> Result<usize, GraphError> {
        self.index(name).ok_or_else(|| {
            GraphError::Graph(format!(
                "no stage `{name}`; the stages are: {}",
                self.names().join(", ")
            ))
        })
    }

    /// `name` and everything it depends on, in execution order (`--until`).
    ///
    /// # Errors
    /// When no stage has that name; the message lists the stages.
    pub fn until(&self, name: &str) -> Result<Vec<&'static str>, GraphError> {
        let i = self.existing(name)?;
        let mut needed = BTreeSet::from([self.stages[i].name()]);
        for stage in self.stages[..=i].iter().rev() {
            if needed.contains(stage.name()) {
                needed.extend(stage.upstream());
            }
        }
        Ok(self
            .names()
            .into_iter()
            .filter(|n| needed.contains(n))
            .collect())
    }

    /// `name` and every stage that depends on it, directly or not (`--force`).
    ///
    /// # Errors
    /// When no stage has that name.
    pub fn downstream(&self, name: &str) -> Result<BTreeSet<&'static str>, GraphError> {
        let i = self.existing(name)?;
        let mut out = BTreeSet::from([self.stages[i].name()]);
        for stage in &self.stages[i + 1..] {
            if stage.upstream().iter().any(|u| out.contains(u)) {
                out.insert(stage.name());
            }
        }
        Ok(out)
    }
}

/// A stage with its key computed.
pub struct Resolved<'g> {
    /// The stage.
    pub stage: &'g dyn Stage,
    /// What went into its key.
    pub material: KeyMaterial,
    /// Its key.
    pub key: StageKey,
    /// Per-file hashes of each `Input::Files`, by label (for `plan`'s reasons).
    pub files: BTreeMap<String, Vec<(PathBuf, String)>>,
}

impl Resolved<'_> {
    /// The per-file input listing stored beside an entry (`label \t path \t blake3`).
    pub fn inputs_tsv(&self) -> String {
        let mut out = String::new();
        for (label, files) in &self.files {
            for (path, hash) in files {
                out.push_str(&format!("{label}\t{}\t{hash}\n", path.display()));
            }
        }
        out
    }
}

/// Computes the keys of `selection` (stage names in execution order), fingerprinting
/// their inputs.
///
/// # Errors
/// When a stage cannot list its inputs or an input file cannot be read.
pub fn resolve<'g>(
    graph: &'g Graph,
    selection: &[&str],
    fingerprinter: &Fingerprinter,
    reporter: &dyn Reporter,
) -> Result<Vec<Resolved<'g>>, GraphError> {
    let mut keys: BTreeMap<&str, StageKey> = BTreeMap::new();
    let mut out = Vec::new();
    for name in selection {
        let stage = graph
            .stage(name)
            .ok_or_else(|| GraphError::Graph(format!("no stage `{name}`")))?;
        let mut material = KeyMaterial {
            stage: stage.name().to_owned(),
            stage_version: stage.version(),
            geoexp_version: GEOEXP_VERSION.to_owned(),
            params: stage.params(),
            upstream: BTreeMap::new(),
            inputs: BTreeMap::new(),
        };
        for up in stage.upstream() {
            let key = keys.get(up).ok_or_else(|| {
                GraphError::Graph(format!(
                    "stage `{name}` needs `{up}`, which is not selected before it"
                ))
            })?;
            material.upstream.insert(up.to_owned(), key.clone());
        }
        let mut files = BTreeMap::new();
        let inputs = stage.inputs().map_err(|source| GraphError::Inputs {
            stage: stage.name().to_owned(),
            source,
        })?;
        for input in inputs {
            let fingerprint = match input {
                Input::Digest { label, digest } => (label, InputFingerprint { digest, files: 0 }),
                Input::Files {
                    label,
                    root,
                    files: list,
                } => {
                    let tick = reporter.start(
                        &format!("{}: fingerprinting {label}", stage.name()),
                        list.len() as u64,
                    );
                    let set = fingerprinter.fingerprint(&root, &list, tick.as_ref())?;
                    tick.finish();
                    let fp = InputFingerprint {
                        digest: set.digest,
                        files: set.files.len(),
                    };
                    files.insert(label.clone(), set.files);
                    (label, fp)
                }
            };
            material.inputs.insert(fingerprint.0, fingerprint.1);
        }
        let key = material.key();
        keys.insert(stage.name(), key.clone());
        out.push(Resolved {
            stage,
            material,
            key,
            files,
        });
    }
    fingerprinter.save()?;
    Ok(out)
}
