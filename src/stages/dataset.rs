//! The dataset stage: locations with splits, from real directories or the generator.
//!
//! Reads: `seed`, `dataset.{dirs, synthetic, split, fraction}`, `classes.boundary` (the
//! generator samples inside it and the map draws it) plus its geometry digest, and — for
//! real data — the content of every file in every dataset directory.
//! Writes: `locations.csv`, `locations.png`, and for synthetic data the generated dataset
//! itself under `synthetic/` (the real layout), so later stages read both the same way.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use serde::Serialize;

use crate::dataset::synth::{SynthOptions, generate};
use crate::dataset::{DirLayout, Fractions, LOCATIONS_FILE, Source, index, write_locations};
use crate::experiment::{Loaded, SplitConfig, SyntheticConfig};
use crate::geo::Boundary;
use crate::graph::{Input, Outcome, Params, Stage, StageContext, StageError, params_of};
use crate::track::map::{MapPoint, MapText, draw_locations};

use super::{BOUNDARY_INPUT, split_index};

/// Name of the stage.
pub const NAME: &str = "dataset";
/// Folder of the generated dataset inside a synthetic dataset entry.
pub const SYNTHETIC_DIR: &str = "synthetic";
/// The `source` label of generated locations.
pub const SYNTHETIC_SOURCE: &str = "synthetic";
/// Map of the locations.
pub const MAP_FILE: &str = "locations.png";

#[derive(Clone, Debug, Serialize)]
struct DatasetParams {
    seed: u64,
    #[serde(rename = "dataset.dirs")]
    dirs: Vec<String>,
    #[serde(rename = "dataset.synthetic", skip_serializing_if = "Option::is_none")]
    synthetic: Option<SyntheticConfig>,
    #[serde(rename = "dataset.split")]
    split: SplitConfig,
    #[serde(rename = "dataset.fraction")]
    fraction: f64,
    #[serde(rename = "classes.boundary")]
    boundary: String,
}

/// Builds the list of located, split locations.
pub struct DatasetStage {
    params: DatasetParams,
    roots: Vec<PathBuf>,
    boundary: Arc<Boundary>,
    layouts: OnceLock<Vec<DirLayout>>,
}

impl DatasetStage {
    /// The stage for `loaded`, drawing and sampling inside `boundary`.
    pub fn new(loaded: &Loaded, boundary: Arc<Boundary>) -> DatasetStage {
        let e = &loaded.experiment;
        DatasetStage {
            params: DatasetParams {
                seed: e.seed,
                dirs: e.dataset.dirs.clone(),
                synthetic: e.dataset.synthetic.clone(),
                split: e.dataset.split.clone(),
                fraction: e.dataset.fraction,
                boundary: e.classes.boundary.clone(),
            },
            roots: e
                .dataset
                .dirs
                .iter()
                .map(|d| loaded.resolve_path("dataset.dirs", d))
                .collect(),
            boundary,
            layouts: OnceLock::new(),
        }
    }

    /// Scans the real directories once; `inputs` and `run` share the listing, so the files
    /// fingerprinted are exactly the files read.
    fn layouts(&self) -> Result<&[DirLayout], StageError> {
        if let Some(l) = self.layouts.get() {
            return Ok(l);
        }
        let scanned = self
            .roots
            .iter()
            .map(|r| DirLayout::scan(r))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(self.layouts.get_or_init(|| scanned))
    }
}

impl Stage for DatasetStage {
    fn name(&self) -> &'static str {
        NAME
    }

    fn version(&self) -> u32 {
        // 2: locations.png has a title, headline, legend and scale bar.
        2
    }

    fn upstream(&self) -> Vec<&'static str> {
        Vec::new()
    }

    fn params(&self) -> Params {
        params_of(&self.params)
    }

    fn inputs(&self) -> Result<Vec<Input>, StageError> {
        let mut inputs = vec![Input::Digest {
            label: BOUNDARY_INPUT.into(),
            digest: self.boundary.digest(),
        }];
        for ((label, root), layout) in self
            .params
            .dirs
            .iter()
            .zip(&self.roots)
            .zip(self.layouts()?)
        {
            inputs.push(Input::Files {
                label: label.clone(),
                root: root.clone(),
                files: layout.input_files(),
            });
        }
        Ok(inputs)
    }

    fn run(&self, ctx: &StageContext<'_>) -> Result<Outcome, StageError> {
        let p = &self.params;
        let sources = match &p.synthetic {
            Some(s) => {
                let dir = ctx.out_dir().join(SYNTHETIC_DIR);
                let tick = ctx.progress("generating synthetic views", s.locations as u64);
                generate(
                    &self.boundary,
                    &SynthOptions {
                        locations: s.locations,
                        image_size: s.image_size,
                        seed: s.seed,
                    },
                    &dir,
                    tick.as_ref(),
                )?;
                tick.finish();
                vec![Source {
                    label: SYNTHETIC_SOURCE.into(),
                    layout: DirLayout::scan(&dir)?,
                }]
            }
            None => p
                .dirs
                .iter()
                .zip(self.layouts()?)
                .map(|(label, layout)| Source {
                    label: label.clone(),
                    layout: layout.clone(),
                })
                .collect(),
        };
        let fractions = Fractions {
            train: p.split.train,
            val: p.split.val,
        };
        let indexed = index(&sources, fractions, p.fraction, p.seed)?;
        let count = |s| indexed.locations.iter().filter(|l| l.split == s).count();
        use crate::dataset::Split;
        let counts = [count(Split::Train), count(Split::Val), count(Split::Test)];
        if let Some(problem) = crate::dataset::split::unusable(counts) {
            return Err(format!(
                "{} locations after dataset.fraction = {:?}: {problem}",
                indexed.locations.len(),
                p.fraction
            )
            .into());
        }
        write_locations(&ctx.out_dir().join(LOCATIONS_FILE), &indexed.locations)?;
        let points: Vec<MapPoint> = indexed
            .locations
            .iter()
            .map(|l| MapPoint {
                lat: l.latitude,
                lon: l.longitude,
                split: split_index(l.split),
            })
            .collect();
        let text = MapText {
            title: format!("Locations · {}", ctx.label()),
            headline: format!(
                "{} locations: {} train, {} val, {} test",
                indexed.locations.len(),
                count(Split::Train),
                count(Split::Val),
                count(Split::Test)
            ),
        };
        draw_locations(
            &ctx.out_dir().join(MAP_FILE),
            self.boundary.shape(),
            &points,
            &text,
        )?;
        if indexed.unreferenced_folders > 0 {
            tracing::warn!(
                "{} image folder(s) have no row in any data.csv and are ignored",
                indexed.unreferenced_folders
            );
        }
        Ok(Outcome::default()
            .with("locations", indexed.locations.len())
            .with("train", count(Split::Train))
            .with("val", count(Split::Val))
            .with("test", count(Split::Test))
            .with("subsampled_out", indexed.subsampled_out)
            .with("unreferenced_image_folders", indexed.unreferenced_folders))
    }
}
