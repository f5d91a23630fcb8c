//! Retrieval refinement: after the geocell classifier has answered, move its guess onto a
//! training location inside the most probable cells that the query's embedding resembles
//! and that similar training locations agree on.
//!
//! Reference: L. Haas, M. Skreta, S. Alberti, C. Finn, "PIGEON: Predicting Image
//! Geolocations", CVPR 2024, §3.5 "retrieval refinement". PIGEON retrieves over clusters of
//! training locations inside the top predicted geocells; this module keeps the method's two
//! ingredients (look only inside the most probable cells, and let embedding-similar training
//! locations vote) in a form with no clustering step: every retrieved training location is a
//! candidate, and the candidates vote for one another through a distance kernel.
//!
//! Plain data in, plain numbers out: no tensors, files or stages. A [`Gallery`] holds the
//! training locations (embedding, class, position); [`refine`] answers one query and
//! [`refine_batch`] many, in parallel.
//!
//! # Semantics
//!
//! Given a query embedding `q` (the caller averages the four views' embeddings), the
//! classifier's softmax row `p` and its plain guess `x₀ = (lat, lon)`, with settings
//! `top_cells = T`, `neighbours = N`, `temperature_km = τ` and `max_move_km = μ`:
//!
//! 1. **Similarity.** `q` is normalised to unit length (in `f64`, stored as `f32`) and so is
//!    every gallery row (once, in [`Gallery::new`]); `sim(i) = q̂ · ĝᵢ` is the cosine
//!    similarity. A zero or non-finite query has no direction and is taken as the zero
//!    vector: every similarity is 0 (no NaN), so nothing scores above zero and `x₀` is kept
//!    (step 5). A zero gallery row likewise has similarity 0 to every query.
//! 2. **Cells.** The `T` most probable classes, in the order of
//!    `train::predict::before`: higher probability first, equal probabilities by lower class
//!    index, NaN as the highest probability (all `K` classes if `T ≥ K`).
//! 3. **Candidates.** In each such cell, the `N` training locations (gallery rows of that
//!    class) with the highest similarity, equal similarities by lower gallery index (all of
//!    them if the cell has fewer). A cell with no training location — including a class above
//!    every class the gallery holds — contributes none.
//! 4. **Vote.** With `C` the set of all candidates (over all `T` cells), `sim⁺ = max(sim, 0)`
//!    and `d` the great-circle distance on the sphere of [`crate::geo::haversine_km`],
//!    candidate `j` of cell `c(j)` at position `xⱼ` scores
//!
//!    ```text
//!    score(j) = p[c(j)] · Σ_{n ∈ C} sim⁺(n) · exp(−d(xⱼ, xₙ) / τ)
//!    ```
//!
//!    (the sum includes `n = j`, which adds `sim⁺(j)`). Each candidate votes for the
//!    locations near it, weighted by how similar it is to the query; a location gathers the
//!    votes of the similar candidates around it and is weighted by its cell's probability.
//!    The candidate with the highest score is the refined guess `x*`; equal scores go to the
//!    lower gallery index. Only a score `> 0` can win (a NaN probability or score never
//!    does).
//! 5. **Guard.** `x₀` is kept (`kept_plain = true`, `moved_km = 0`) if there is no
//!    candidate, if no candidate scores above zero, if `x₀` is not finite, or if
//!    `d(x₀, x*) > μ`. Otherwise the answer is `x*` and `moved_km = d(x₀, x*)`.
//!    `μ = ∞` disables the guard.
//!
//! The sums run in `f64`; the dot products in `f32` with a fixed order of accumulation (the
//! same with or without AVX), so the same inputs give the same bits on every run, thread
//! count and x86-64 CPU. The vote's distances are the haversine formula's
//! `2R·asin(√a)` with `a = |uⱼ − uₙ|² / 4` from the points' unit vectors `u` (precomputed
//! per gallery row), equal to [`crate::geo::haversine_km`]'s up to rounding; `moved_km`
//! is [`crate::geo::haversine_km`] itself.
//!
//! # Cost
//!
//! The gallery stores its embeddings grouped by class, so a query streams only its `T`
//! cells' rows, each cell from contiguous memory: `T · cell size · D` multiply-adds over as
//! many `f32`s read. Reading dominates: 5 cells of 2,000 rows of 1,024 values are 40 MB a
//! query, so memory bandwidth alone keeps one [`refine`] at milliseconds, not microseconds.
//! [`refine_batch`] lets the queries that search a cell share one pass over its rows, so
//! rows come from memory once per block of queries and the multiply-adds bound it instead.
//! The vote adds `|C|²/2` distance kernels (`|C| ≤ T · N`: 80 candidates are 3,160).
//! Measured with 100,000 × 1,024, 50 cells of 2,000 rows, `T = 5`, `N = 16`, on a shared
//! 2-core EPYC streaming ~6.5 GB/s: [`refine`] 7–10 ms a query, [`refine_batch`] 2.3–3 ms a
//! query, the vote alone 0.2–0.3 ms.

use std::cmp::Ordering;

use rayon::prelude::*;

use crate::geo::{EARTH_RADIUS_KM, haversine_km};
use crate::train::predict::before;

pub use crate::vocab::RefineSettings;

impl RefineSettings {
    /// Checks every setting against its rule.
    ///
    /// # Errors
    /// [`RefineError::Setting`] naming the first setting that breaks its rule.
    pub fn validate(&self) -> Result<(), RefineError> {
        match self.broken_rule() {
            Some((name, rule, value)) => Err(RefineError::Setting { name, rule, value }),
            None => Ok(()),
        }
    }
}

/// Why refinement settings or a gallery were refused.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RefineError {
    /// A setting breaks its rule.
    #[error("refinement: {name} must be {rule}, got {value}")]
    Setting {
        /// The setting's field name.
        name: &'static str,
        /// What it must be.
        rule: &'static str,
        /// What it was.
        value: String,
    },
    /// The embedding dimension is zero.
    #[error("refinement gallery: the embedding dimension must be at least 1")]
    ZeroDim,
    /// The gallery has no training location.
    #[error("refinement gallery: no training locations")]
    Empty,
    /// The embeddings are not a whole number of rows.
    #[error("refinement gallery: {len} embedding values are not a whole number of rows of {dim}")]
    Ragged {
        /// Number of embedding values.
        len: usize,
        /// The embedding dimension.
        dim: usize,
    },
    /// Classes or positions do not match the embedding rows one to one.
    #[error("refinement gallery: {got} {what} for {rows} embedding rows")]
    Length {
        /// `classes` or `positions`.
        what: &'static str,
        /// Their number.
        got: usize,
        /// The number of embedding rows.
        rows: usize,
    },
    /// A value is NaN or infinite.
    #[error("refinement gallery row {row}: {what} is {value}, not a finite number")]
    NonFinite {
        /// The gallery row (training location), 0-based.
        row: usize,
        /// Which value: an embedding component, the latitude or the longitude.
        what: String,
        /// The value.
        value: f64,
    },
    /// A latitude outside [−90, 90].
    #[error("refinement gallery row {row}: latitude {value} is outside [-90, 90]")]
    Latitude {
        /// The gallery row, 0-based.
        row: usize,
        /// The latitude.
        value: f64,
    },
}

/// The training locations refinement retrieves from: unit-length embeddings, classes and
/// positions. The embeddings are stored grouped by class, so that a query streams its
/// cells' rows from contiguous memory and reads no other.
pub struct Gallery {
    dim: usize,
    /// `[M, dim]`, every row of unit length (or zero), in slot order: grouped by class,
    /// ascending row within a class. Slot `k` holds row `rows[k]`.
    embeddings: Vec<f32>,
    /// `(lat, lon)` per row, degrees.
    positions: Vec<(f64, f64)>,
    /// Each position as a unit vector, for the vote's distances.
    unit: Vec<[f64; 3]>,
    /// The distinct classes, ascending.
    cells: Vec<usize>,
    /// Slots `starts[k]..starts[k + 1]` hold the rows of `cells[k]`.
    starts: Vec<usize>,
    /// The row (index into the caller's arrays) of each slot.
    rows: Vec<usize>,
}

impl std::fmt::Debug for Gallery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gallery")
            .field("locations", &self.positions.len())
            .field("dim", &self.dim)
            .field("cells", &self.cells.len())
            .finish_non_exhaustive()
    }
}

impl Gallery {
    /// Builds a gallery of `M` training locations: `embeddings` `[M, dim]` row-major,
    /// `classes[i]` and `positions[i] = (lat, lon)` in degrees for row `i`. Rows are
    /// normalised to unit length here (a zero row stays zero), so they need not be already,
    /// and regrouped by class in place (no second copy).
    ///
    /// # Errors
    /// A zero `dim`, no rows, a length that is not `M · dim`, classes or positions that are
    /// not one per row, a non-finite value or a latitude outside [−90, 90] (naming the row).
    pub fn new(
        mut embeddings: Vec<f32>,
        dim: usize,
        classes: Vec<usize>,
        positions: Vec<(f64, f64)>,
    ) -> Result<Self, RefineError> {
        if dim == 0 {
            return Err(RefineError::ZeroDim);
        }
        if !embeddings.len().is_multiple_of(dim) {
            return Err(RefineError::Ragged {
                len: embeddings.len(),
                dim,
            });
        }
        let m = embeddings.len() / dim;
        if m == 0 {
            return Err(RefineError::Empty);
        }
        for (what, got) in [("classes", classes.len()), ("positions", positions.len())] {
            if got != m {
                return Err(RefineError::Length { what, got, rows: m });
            }
        }
        for (row, &(lat, lon)) in positions.iter().enumerate() {
            for (what, value) in [("latitude", lat), ("longitude", lon)] {
                if !value.is_finite() {
                    return Err(RefineError::NonFinite {
                        row,
                        what: what.to_owned(),
                        value,
                    });
                }
            }
            if !(-90.0..=90.0).contains(&lat) {
                return Err(RefineError::Latitude { row, value: lat });
            }
        }
        for (row, e) in embeddings.chunks_exact_mut(dim).enumerate() {
            if let Some(col) = e.iter().position(|v| !v.is_finite()) {
                return Err(RefineError::NonFinite {
                    row,
                    what: format!("embedding component {col}"),
                    value: f64::from(e[col]),
                });
            }
            normalise(e);
        }
        // A stable sort keeps each class's rows in ascending order.
        let mut rows: Vec<usize> = (0..m).collect();
        rows.sort_by_key(|&i| classes[i]);
        permute_rows(&mut embeddings, dim, &rows);
        let (mut cells, mut starts) = (Vec::new(), Vec::new());
        for (k, &i) in rows.iter().enumerate() {
            if cells.last() != Some(&classes[i]) {
                cells.push(classes[i]);
                starts.push(k);
            }
        }
        starts.push(m);
        let unit = positions
            .iter()
            .map(|&(lat, lon)| unit_vector(lat, lon))
            .collect();
        Ok(Gallery {
            dim,
            embeddings,
            positions,
            unit,
            cells,
            starts,
            rows,
        })
    }

    /// Number of training locations.
    pub fn len(&self) -> usize {
        self.positions.len()
    }

    /// Whether there is no training location (never, once built).
    pub fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }

    /// The embedding dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The rows of class `cell`, ascending (empty if the gallery has none).
    pub fn rows_of(&self, cell: usize) -> &[usize] {
        &self.rows[self.slots(cell)]
    }

    /// The slots of class `cell` (empty if the gallery has none).
    fn slots(&self, cell: usize) -> std::ops::Range<usize> {
        match self.cells.binary_search(&cell) {
            Ok(k) => self.starts[k]..self.starts[k + 1],
            Err(_) => 0..0,
        }
    }

    /// The unit embedding in slot `k`.
    fn stored(&self, k: usize) -> &[f32] {
        &self.embeddings[k * self.dim..(k + 1) * self.dim]
    }
}

/// Reorders the `dim`-wide rows of `data` in place so that slot `k` holds old row
/// `order[k]`, following the permutation's cycles with one row of scratch.
fn permute_rows(data: &mut [f32], dim: usize, order: &[usize]) {
    let mut done = vec![false; order.len()];
    let mut scratch = vec![0.0f32; dim];
    for start in 0..order.len() {
        if done[start] || order[start] == start {
            continue;
        }
        scratch.copy_from_slice(&data[start * dim..(start + 1) * dim]);
        let mut k = start;
        loop {
            done[k] = true;
            let from = order[k];
            if from == start {
                data[k * dim..(k + 1) * dim].copy_from_slice(&scratch);
                break;
            }
            data.copy_within(from * dim..(from + 1) * dim, k * dim);
            k = from;
        }
    }
}

/// The `n` most similar rows offered so far, most similar first. Rows are offered in
/// ascending order, so an equally similar later row ranks behind: ties go to the lower row.
struct Nearest {
    n: usize,
    top: Vec<(f32, usize)>,
}

impl Nearest {
    fn new(n: usize) -> Self {
        Nearest { n, top: Vec::new() }
    }

    fn offer(&mut self, sim: f32, row: usize) {
        let full = self.top.len() == self.n;
        if full && sim.total_cmp(&self.top[self.n - 1].0) != Ordering::Greater {
            return;
        }
        let at = self
            .top
            .partition_point(|&(s, _)| s.total_cmp(&sim) != Ordering::Less);
        if full {
            self.top.pop();
        }
        self.top.insert(at, (sim, row));
    }
}

/// The answer for one location.
#[derive(Clone, Debug, PartialEq)]
pub struct Refined {
    /// Latitude of the answer, degrees.
    pub lat: f64,
    /// Longitude of the answer, degrees.
    pub lon: f64,
    /// Great-circle distance from the plain guess to the answer, km (0 when kept plain).
    pub moved_km: f64,
    /// Whether the answer is the classifier's plain guess.
    pub kept_plain: bool,
    /// The class of the training location answered with; when kept plain, the most probable
    /// class.
    pub cell: usize,
    /// The gallery row answered with (`None` when kept plain).
    pub neighbour: Option<usize>,
    /// How many candidates voted (at most `top_cells · neighbours`).
    pub candidates: usize,
}

/// Refines one location's plain guess `plain = (lat, lon)` with its embedding `query`
/// (`gallery.dim()` values) and its softmax row `probs`, as the module docs describe.
///
/// # Panics
/// If `s` fails [`RefineSettings::validate`] (validate settings once, where they are read),
/// if `query` is not `gallery.dim()` long, or if `probs` is empty.
pub fn refine(
    gallery: &Gallery,
    query: &[f32],
    probs: &[f32],
    plain: (f64, f64),
    s: &RefineSettings,
) -> Refined {
    if let Err(e) = s.validate() {
        panic!("{e}");
    }
    let q = unit_query(gallery, query);
    assert!(!probs.is_empty(), "no classes");
    let cells = top_cells(probs, s.top_cells);
    let dot = dot_for_this_cpu();
    let nearest = cells
        .iter()
        .map(|&cell| {
            let mut near = Nearest::new(s.neighbours);
            for k in gallery.slots(cell) {
                near.offer(dot(&q, gallery.stored(k)), gallery.rows[k]);
            }
            near.top
        })
        .collect();
    decide(gallery, probs, plain, &cells, nearest, s)
}

/// Queries per task of [`refine_batch`]'s scan: their unit embeddings (4 KiB each at
/// 1,024 dimensions) stay in cache while a cell's rows stream past once.
const QUERY_BLOCK: usize = 32;

/// [`refine`] for many locations in parallel: `queries` `[B, dim]` row-major, `probs` one
/// softmax row and `plains` one plain guess per location. Gives exactly what [`refine`]
/// gives for each (the same bits).
///
/// Queries that search the same cell share one pass over its rows (per block of 32
/// queries), so a batch reads each cell's embeddings from memory once per
/// block rather than once per query; the passes run in parallel, then the votes.
///
/// # Panics
/// As [`refine`], and if `probs`, `plains` and the rows of `queries` differ in number.
pub fn refine_batch<P: AsRef<[f32]> + Sync>(
    gallery: &Gallery,
    queries: &[f32],
    probs: &[P],
    plains: &[(f64, f64)],
    s: &RefineSettings,
) -> Vec<Refined> {
    if let Err(e) = s.validate() {
        panic!("{e}");
    }
    let dim = gallery.dim;
    assert_eq!(probs.len(), plains.len(), "one softmax row per plain guess");
    assert_eq!(
        queries.len(),
        plains.len() * dim,
        "one {dim}-dimensional query per plain guess"
    );
    let units: Vec<f32> = queries
        .par_chunks(dim)
        .flat_map_iter(|q| unit_query(gallery, q))
        .collect();
    let cells: Vec<Vec<usize>> = probs
        .par_iter()
        .map(|p| {
            assert!(!p.as_ref().is_empty(), "no classes");
            top_cells(p.as_ref(), s.top_cells)
        })
        .collect();

    // Who searches which cell: (query, its position among the query's cells), per cell.
    let mut searches: std::collections::BTreeMap<usize, Vec<(usize, usize)>> =
        std::collections::BTreeMap::new();
    for (q, cs) in cells.iter().enumerate() {
        for (at, &cell) in cs.iter().enumerate() {
            if !gallery.slots(cell).is_empty() {
                searches.entry(cell).or_default().push((q, at));
            }
        }
    }
    let tasks: Vec<(usize, &[(usize, usize)])> = searches
        .iter()
        .flat_map(|(&cell, who)| who.chunks(QUERY_BLOCK).map(move |b| (cell, b)))
        .collect();
    let dot = dot_for_this_cpu();
    let found: Vec<Vec<Nearest>> = tasks
        .par_iter()
        .map(|&(cell, who)| {
            let mut near: Vec<Nearest> = who.iter().map(|_| Nearest::new(s.neighbours)).collect();
            for k in gallery.slots(cell) {
                let row = gallery.stored(k);
                for (nb, &(q, _)) in near.iter_mut().zip(who) {
                    nb.offer(dot(&units[q * dim..(q + 1) * dim], row), gallery.rows[k]);
                }
            }
            near
        })
        .collect();

    let mut nearest: Vec<Vec<Vec<(f32, usize)>>> =
        cells.iter().map(|cs| vec![Vec::new(); cs.len()]).collect();
    for ((_, who), near) in tasks.iter().zip(found) {
        for (&(q, at), nb) in who.iter().zip(near) {
            nearest[q][at] = nb.top;
        }
    }
    nearest
        .into_par_iter()
        .zip(cells.par_iter())
        .zip(probs.par_iter())
        .zip(plains.par_iter())
        .map(|(((near, cs), p), &plain)| decide(gallery, p.as_ref(), plain, cs, near, s))
        .collect()
}

/// `query` scaled to unit length; a zero or non-finite one becomes the zero vector.
///
/// # Panics
/// If `query` is not `gallery.dim()` long.
fn unit_query(gallery: &Gallery, query: &[f32]) -> Vec<f32> {
    assert_eq!(
        query.len(),
        gallery.dim,
        "the query has {} values, the gallery's embeddings {}",
        query.len(),
        gallery.dim
    );
    let mut q = query.to_vec();
    if q.iter().all(|v| v.is_finite()) {
        normalise(&mut q);
    } else {
        q.fill(0.0);
    }
    q
}

/// One candidate of the vote.
struct Candidate {
    row: usize,
    cell: usize,
    sim: f32,
}

/// The vote and the guard, given each top cell's nearest rows (`nearest[i]` for
/// `cells[i]`).
fn decide(
    gallery: &Gallery,
    probs: &[f32],
    plain: (f64, f64),
    cells: &[usize],
    nearest: Vec<Vec<(f32, usize)>>,
    s: &RefineSettings,
) -> Refined {
    let candidates: Vec<Candidate> = cells
        .iter()
        .zip(nearest)
        .flat_map(|(&cell, near)| {
            near.into_iter()
                .map(move |(sim, row)| Candidate { row, cell, sim })
        })
        .collect();
    let kept = Refined {
        lat: plain.0,
        lon: plain.1,
        moved_km: 0.0,
        kept_plain: true,
        cell: cells[0],
        neighbour: None,
        candidates: candidates.len(),
    };
    let Some(best) = vote(gallery, &candidates, probs, s.temperature_km) else {
        return kept;
    };
    let (lat, lon) = gallery.positions[best.row];
    let moved_km = haversine_km(plain.0, plain.1, lat, lon);
    // A non-finite plain guess has no distance to compare (`haversine_km` would not say NaN).
    if !(plain.0.is_finite() && plain.1.is_finite() && moved_km <= s.max_move_km) {
        return kept;
    }
    Refined {
        lat,
        lon,
        moved_km,
        kept_plain: false,
        cell: best.cell,
        neighbour: Some(best.row),
        candidates: candidates.len(),
    }
}

/// The `t` most probable classes, best first, in [`before`]'s order.
fn top_cells(probs: &[f32], t: usize) -> Vec<usize> {
    let t = t.min(probs.len());
    let mut top: Vec<usize> = Vec::with_capacity(t + 1);
    for c in 0..probs.len() {
        if top.len() == t && before(probs, c, top[t - 1]) != Ordering::Less {
            continue;
        }
        let at = top.partition_point(|&b| before(probs, b, c) == Ordering::Less);
        top.insert(at, c);
        top.truncate(t);
    }
    top
}

/// The winning candidate: highest `p[cell] · Σₙ sim⁺ₙ · exp(−d / τ)` above zero, equal
/// scores by lower gallery row.
fn vote<'a>(
    gallery: &Gallery,
    candidates: &'a [Candidate],
    probs: &[f32],
    temperature_km: f64,
) -> Option<&'a Candidate> {
    let weight: Vec<f64> = candidates
        .iter()
        .map(|c| f64::from(c.sim).max(0.0))
        .collect();
    // Each candidate's own vote (distance 0, kernel 1), then every pair once: the kernel is
    // symmetric, so one distance serves both directions.
    let mut votes = weight.clone();
    for j in 0..candidates.len() {
        let u = gallery.unit[candidates[j].row];
        for n in j + 1..candidates.len() {
            if weight[j] == 0.0 && weight[n] == 0.0 {
                continue;
            }
            let d = chord_km(u, gallery.unit[candidates[n].row]);
            let kernel = (-d / temperature_km).exp();
            votes[j] += weight[n] * kernel;
            votes[n] += weight[j] * kernel;
        }
    }
    let mut best: Option<(f64, &Candidate)> = None;
    for (c, v) in candidates.iter().zip(votes) {
        let score = f64::from(probs[c.cell]) * v;
        if score.is_nan() || score <= 0.0 {
            continue;
        }
        let better = match best {
            None => true,
            Some((b, bc)) => score > b || (score == b && c.row < bc.row),
        };
        if better {
            best = Some((score, c));
        }
    }
    best.map(|(_, c)| c)
}

/// Scales `v` to unit length in place (the norm in `f64`); a zero vector stays zero.
fn normalise(v: &mut [f32]) {
    let norm = v
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt();
    if norm > 0.0 {
        for x in v {
            *x = (f64::from(*x) / norm) as f32;
        }
    }
}

/// `(lat, lon)` in degrees as a point of the unit sphere.
fn unit_vector(lat: f64, lon: f64) -> [f64; 3] {
    let (lat, lon) = (lat.to_radians(), lon.to_radians());
    [lat.cos() * lon.cos(), lat.cos() * lon.sin(), lat.sin()]
}

/// Great-circle distance in km between two unit vectors: the haversine formula's
/// `2R·asin(√a)`, with `a` (the haversine of the central angle) `= (chord / 2)²`.
fn chord_km(u: [f64; 3], v: [f64; 3]) -> f64 {
    let chord2 = (u[0] - v[0]).powi(2) + (u[1] - v[1]).powi(2) + (u[2] - v[2]).powi(2);
    2.0 * EARTH_RADIUS_KM * (chord2 / 4.0).sqrt().min(1.0).asin()
}

/// The fastest [`dot`] this CPU runs; every one gives the same bits.
fn dot_for_this_cpu() -> fn(&[f32], &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx") {
        return |a, b| {
            // SAFETY: the CPU has AVX, checked just above.
            unsafe { dot_avx(a, b) }
        };
    }
    dot
}

/// [`dot`] compiled for 256-bit AVX registers: the same operations in the same order (no
/// fused multiply-add), so the same result as on any x86-64 CPU.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
fn dot_avx(a: &[f32], b: &[f32]) -> f32 {
    dot(a, b)
}

/// Dot product with 16 independent `f32` accumulators (so the compiler vectorises it),
/// summed in a fixed order.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let (ca, ra) = a.as_chunks::<LANES>();
    let (cb, rb) = b.as_chunks::<LANES>();
    let mut acc = [0.0f32; LANES];
    for (x, y) in ca.iter().zip(cb) {
        for ((s, xi), yi) in acc.iter_mut().zip(x).zip(y) {
            *s += xi * yi;
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::geo::EARTH_RADIUS_KM;

    /// One degree of longitude on the equator, km: with `temperature_km = DEG_KM` the kernel
    /// between equator points `Δ` degrees apart is `exp(−Δ)`.
    const DEG_KM: f64 = EARTH_RADIUS_KM * std::f64::consts::PI / 180.0; // 111.19508023353

    const QUERY: [f32; 2] = [1.0, 0.0];

    /// A gallery of 2-d embeddings on the equator: `(embedding, class, lon)` per row. The
    /// query `[1, 0]`'s similarity to a row is the row's first component.
    fn equator(rows: &[([f32; 2], usize, f64)]) -> Gallery {
        Gallery::new(
            rows.iter().flat_map(|r| r.0).collect(),
            2,
            rows.iter().map(|r| r.1).collect(),
            rows.iter().map(|r| (0.0, r.2)).collect(),
        )
        .expect("a valid gallery")
    }

    fn settings(top_cells: usize, neighbours: usize, temperature_km: f64) -> RefineSettings {
        RefineSettings {
            top_cells,
            neighbours,
            temperature_km,
            max_move_km: f64::INFINITY,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-6
    }

    /// Cell 0 (p = 0.55): row 0 at lon 0 with similarity 0.8, row 1 at lon 20 with 0.
    /// Cell 1 (p = 0.45): a tight cluster, rows 2, 3, 4 at lon 10, 10.1, 10.2, each 0.6.
    fn two_cells() -> Gallery {
        equator(&[
            ([0.8, 0.6], 0, 0.0),
            ([0.0, 1.0], 0, 20.0),
            ([0.6, 0.8], 1, 10.0),
            ([0.6, 0.8], 1, 10.1),
            ([0.6, 0.8], 1, 10.2),
        ])
    }
    const TWO_CELL_PROBS: [f32; 2] = [0.55, 0.45];

    #[test]
    fn refinement_moves_to_a_tight_cluster_of_similar_neighbours() {
        let g = two_cells();
        let plain = (0.0, 4.0);
        // τ = 1°, kernel exp(−Δ°). Candidates: rows 0, 1 (cell 0 has only two) and 2, 3, 4.
        //   score(0) = 0.55·(0.8 + 0·e^-20 + 0.6·(e^-10 + e^-10.1 + e^-10.2))
        //            = 0.55·0.80007419 = 0.44004080
        //   score(1) = 0.55·(0.8·e^-20 + 0.6·(e^-10 + e^-9.9 + e^-9.8)) = 0.00004984
        //   score(2) = 0.45·(0.6 + 0.6·e^-0.1 + 0.6·e^-0.2 + 0.8·e^-10)
        //            = 0.45·(0.6 + 0.54290245 + 0.49123845 + 0.00003632) = 0.73537975
        //   score(3) = 0.45·(0.6 + 2·0.6·e^-0.1 + 0.8·e^-10.1)
        //            = 0.45·(0.6 + 1.08580490 + 0.00003286) = 0.75862699
        //   score(4) = 0.45·(0.6 + 0.6·e^-0.1 + 0.6·e^-0.2 + 0.8·e^-10.2) = 0.73537679
        // The cluster's middle (row 3, lon 10.1) wins though cell 0 is more probable and
        // row 0 more similar; it is 6.1° = 678.28999 km from the plain guess.
        let r = refine(&g, &QUERY, &TWO_CELL_PROBS, plain, &settings(2, 3, DEG_KM));
        assert!(!r.kept_plain, "{r:?}");
        assert_eq!((r.neighbour, r.cell, r.candidates), (Some(3), 1, 5));
        assert_eq!((r.lat, r.lon), (0.0, 10.1));
        assert!(close(r.moved_km, 678.2899894), "{r:?}");

        // One neighbour per cell: no cluster to vote, and the most similar row wins.
        //   score(0) = 0.55·(0.8 + 0.6·e^-10) = 0.44001498
        //   score(2) = 0.45·(0.6 + 0.8·e^-10) = 0.27001634
        let r = refine(&g, &QUERY, &TWO_CELL_PROBS, plain, &settings(2, 1, DEG_KM));
        assert_eq!((r.neighbour, r.cell, r.candidates), (Some(0), 0, 2));
        assert!(close(r.moved_km, 4.0 * DEG_KM), "{r:?}");

        // One cell: only cell 0's rows are candidates.
        let r = refine(&g, &QUERY, &TWO_CELL_PROBS, plain, &settings(1, 3, DEG_KM));
        assert_eq!((r.neighbour, r.cell, r.candidates), (Some(0), 0, 2));
    }

    #[test]
    fn the_cluster_vote_beats_a_more_similar_outlier() {
        // One cell (p = 1): row 0 is the most similar (1.0) but alone at lon 50; rows 1, 2, 3
        // sit at lon 0, 0.5, 1 with similarities 0.8, 0.8, 0.6.
        let g = equator(&[
            ([1.0, 0.0], 0, 50.0),
            ([0.8, 0.6], 0, 0.0),
            ([0.8, 0.6], 0, 0.5),
            ([0.6, 0.8], 0, 1.0),
        ]);
        let plain = (0.0, 2.0);
        // τ = 1°; the outlier is ≥ 49° from the others (e^-49 ≈ 5e-22):
        //   score(0) = 1.0
        //   score(1) = 0.8 + 0.8·e^-0.5 + 0.6·e^-1 = 0.8 + 0.48522453 + 0.22072766 = 1.50595219
        //   score(2) = 0.8·e^-0.5 + 0.8 + 0.6·e^-0.5 = 0.8 + 1.4·0.60653066 = 1.64914292
        //   score(3) = 0.8·e^-1 + 0.8·e^-0.5 + 0.6 = 0.29430355 + 0.48522453 + 0.6 = 1.37952808
        // Row 2, 1.5° = 166.79262 km from the plain guess.
        let r = refine(&g, &QUERY, &[1.0], plain, &settings(1, 4, DEG_KM));
        assert_eq!((r.neighbour, r.lon, r.candidates), (Some(2), 0.5, 4));
        assert!(close(r.moved_km, 166.7926204), "{r:?}");

        // τ = 1 km: 0.5° = 55.6 km apart gives e^-55.6 ≈ 7e-25, so scores are the similarities
        // and the outlier wins, 48° = 5337.36385 km away.
        let r = refine(&g, &QUERY, &[1.0], plain, &settings(1, 4, 1.0));
        assert_eq!((r.neighbour, r.lon), (Some(0), 50.0));
        assert!(close(r.moved_km, 5337.3638512), "{r:?}");

        // One neighbour: only the outlier is a candidate.
        let r = refine(&g, &QUERY, &[1.0], plain, &settings(1, 1, DEG_KM));
        assert_eq!((r.neighbour, r.candidates), (Some(0), 1));
    }

    #[test]
    fn max_move_keeps_the_plain_guess() {
        let g = two_cells();
        let plain = (0.0, 4.0);
        // The winner (row 3, lon 10.1) is 678.29 km away: the plain guess stays, and the
        // next best candidate within reach (row 0, 444.78 km) is not taken instead.
        let mut s = settings(2, 3, DEG_KM);
        s.max_move_km = 600.0;
        let r = refine(&g, &QUERY, &TWO_CELL_PROBS, plain, &s);
        assert_eq!(
            r,
            Refined {
                lat: 0.0,
                lon: 4.0,
                moved_km: 0.0,
                kept_plain: true,
                cell: 0,
                neighbour: None,
                candidates: 5,
            }
        );
        s.max_move_km = 700.0;
        assert_eq!(
            refine(&g, &QUERY, &TWO_CELL_PROBS, plain, &s).neighbour,
            Some(3)
        );
        // Exactly the limit is allowed: only "more than" keeps the plain guess.
        s.max_move_km = haversine_km(0.0, 4.0, 0.0, 10.1);
        let r = refine(&g, &QUERY, &TWO_CELL_PROBS, plain, &s);
        assert_eq!((r.kept_plain, r.neighbour), (false, Some(3)));
        // A NaN plain guess has no distance to compare: it is kept, visibly NaN.
        s.max_move_km = f64::INFINITY;
        let r = refine(&g, &QUERY, &TWO_CELL_PROBS, (f64::NAN, 4.0), &s);
        assert!(r.kept_plain && r.lat.is_nan() && r.moved_km == 0.0, "{r:?}");
    }

    #[test]
    fn empty_cells_contribute_no_candidates() {
        // Classes 0 and 2 have rows; class 1 has none, class 3 is above every class held.
        let g = equator(&[([0.8, 0.6], 2, 3.0), ([0.6, 0.8], 0, 1.0)]);
        assert_eq!(g.rows_of(1), &[] as &[usize]);
        assert_eq!(g.rows_of(3), &[] as &[usize]);
        let plain = (0.0, 5.0);
        let probs = [0.2, 0.5, 0.1, 0.2];
        // Top cell 1 is empty: nothing to vote, the plain guess stays, named by cell 1.
        let r = refine(&g, &QUERY, &probs, plain, &settings(1, 2, DEG_KM));
        assert_eq!((r.kept_plain, r.cell, r.candidates), (true, 1, 0));
        assert_eq!((r.lat, r.lon, r.moved_km), (0.0, 5.0, 0.0));
        // Top 2: cells 1, then 0 (0.2 = 0.2 with class 3, lower index first): row 1 alone,
        // score 0.2·0.6 > 0, 4° away.
        let r = refine(&g, &QUERY, &probs, plain, &settings(2, 2, DEG_KM));
        assert_eq!((r.neighbour, r.cell, r.candidates), (Some(1), 0, 1));
        assert!(close(r.moved_km, 4.0 * DEG_KM));
        // Top 3 adds class 3 (empty), not class 2.
        let r = refine(&g, &QUERY, &probs, plain, &settings(3, 2, DEG_KM));
        assert_eq!((r.neighbour, r.candidates), (Some(1), 1));
        // More cells than classes: all four, so class 2's row joins and, more probable than
        // nothing but less than class 0 (0.1·0.8·… < 0.2·0.6·…), does not win:
        //   score(row 1) = 0.2·(0.6 + 0.8·e^-2) = 0.2·0.70826823 = 0.14165365
        //   score(row 0) = 0.1·(0.8 + 0.6·e^-2) = 0.1·0.88120117 = 0.08812012
        let r = refine(&g, &QUERY, &probs, plain, &settings(9, 2, DEG_KM));
        assert_eq!((r.neighbour, r.candidates), (Some(1), 2));
        // The most probable class is above every class of the gallery.
        let r = refine(
            &g,
            &QUERY,
            &[0.1, 0.1, 0.1, 0.7],
            plain,
            &settings(1, 2, DEG_KM),
        );
        assert_eq!((r.kept_plain, r.cell, r.candidates), (true, 3, 0));
    }

    #[test]
    fn ties_go_to_the_lower_index() {
        // Cells: 0.4 = 0.4, class 0 takes the single slot (as `before` orders them).
        let g = equator(&[([1.0, 0.0], 1, 1.0), ([1.0, 0.0], 0, 0.0)]);
        let r = refine(
            &g,
            &QUERY,
            &[0.4, 0.4, 0.2],
            (0.0, 3.0),
            &settings(1, 1, DEG_KM),
        );
        assert_eq!((r.cell, r.neighbour, r.lon), (0, Some(1), 0.0));

        // Neighbours: rows 1 and 3 of class 0 have the same embedding; one neighbour is row 1
        // (rows 0 and 2 are another class).
        let g = equator(&[
            ([1.0, 0.0], 1, 9.0),
            ([0.6, 0.8], 0, 6.0),
            ([1.0, 0.0], 1, 9.0),
            ([0.6, 0.8], 0, 5.0),
        ]);
        let r = refine(&g, &QUERY, &[0.9, 0.1], (0.0, 0.0), &settings(1, 1, DEG_KM));
        assert_eq!((r.neighbour, r.lon, r.candidates), (Some(1), 6.0, 1));

        // Scores: two equally similar rows 2° apart both score 0.6 + 0.6·e^-2 = 0.68120117;
        // the lower row wins wherever it lies.
        for (lon_first, lon_second) in [(2.0, 0.0), (0.0, 2.0)] {
            let g = equator(&[([0.6, 0.8], 0, lon_first), ([0.6, 0.8], 0, lon_second)]);
            let r = refine(&g, &QUERY, &[1.0], (0.0, 1.0), &settings(1, 2, DEG_KM));
            assert_eq!((r.neighbour, r.lon), (Some(0), lon_first));
        }
    }

    #[test]
    fn a_query_without_direction_keeps_the_plain_guess() {
        let g = two_cells();
        let plain = (0.0, 4.0);
        let s = settings(2, 3, DEG_KM);
        // Zero: every similarity is 0, so every score is 0 and none wins; no NaN anywhere.
        // Candidates are still the first rows of each cell (all tie at 0).
        for q in [[0.0, 0.0], [f32::NAN, 1.0], [f32::INFINITY, 0.0]] {
            let r = refine(&g, &q, &TWO_CELL_PROBS, plain, &s);
            assert!(r.kept_plain, "{q:?}: {r:?}");
            assert_eq!((r.lat, r.lon, r.moved_km, r.cell), (0.0, 4.0, 0.0, 0));
            assert_eq!(r.candidates, 5);
        }
        // Pointing away from every row: all similarities ≤ 0, sim⁺ = 0, nothing to vote.
        let r = refine(&g, &[-1.0, 0.0], &TWO_CELL_PROBS, plain, &s);
        assert!(r.kept_plain, "{r:?}");
        // Zero probabilities for the searched cells: every score is 0.
        let r = refine(&g, &QUERY, &[0.0, 0.0], plain, &s);
        assert!(r.kept_plain, "{r:?}");
    }

    #[test]
    fn embeddings_need_not_be_unit_length() {
        let g = two_cells();
        let scaled = Gallery::new(
            vec![8.0, 6.0, 0.0, 0.5, 3.0, 4.0, 0.06, 0.08, 6e3, 8e3],
            2,
            vec![0, 0, 1, 1, 1],
            vec![
                (0.0, 0.0),
                (0.0, 20.0),
                (0.0, 10.0),
                (0.0, 10.1),
                (0.0, 10.2),
            ],
        )
        .unwrap();
        let s = settings(2, 3, DEG_KM);
        let want = refine(&g, &QUERY, &TWO_CELL_PROBS, (0.0, 4.0), &s);
        let got = refine(&scaled, &[7.0, 0.0], &TWO_CELL_PROBS, (0.0, 4.0), &s);
        assert_eq!(got, want);
    }

    /// The raw data of a gallery: embeddings, dimension, classes, positions.
    struct Raw {
        emb: Vec<f32>,
        dim: usize,
        classes: Vec<usize>,
        positions: Vec<(f64, f64)>,
    }

    /// A random gallery of `m` rows in `classes` classes, `dim`-dimensional embeddings with a
    /// shared component so that similarities are mostly positive, positions in a 20° box.
    fn random_raw(rng: &mut ChaCha8Rng, m: usize, classes: usize, dim: usize) -> Raw {
        Raw {
            emb: (0..m * dim)
                .map(|i| rng.random_range(-1.0f32..1.0) + if i % dim == 0 { 2.0 } else { 0.0 })
                .collect(),
            dim,
            classes: (0..m).map(|_| rng.random_range(0..classes)).collect(),
            positions: (0..m)
                .map(|_| (rng.random_range(40.0..60.0), rng.random_range(0.0..20.0)))
                .collect(),
        }
    }

    fn random_probs(rng: &mut ChaCha8Rng, k: usize) -> Vec<f32> {
        let raw: Vec<f32> = (0..k)
            .map(|_| rng.random_range(0.0f32..1.0).powi(3))
            .collect();
        let total: f32 = raw.iter().sum();
        raw.iter().map(|p| p / total).collect()
    }

    /// The semantics written out the slow way, in `f64`, from the raw data (no gallery): the
    /// winning row, if any.
    fn reference(g: &Raw, q: &[f32], probs: &[f32], s: &RefineSettings) -> Option<usize> {
        let norm = |v: &[f32]| v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
        let qn = norm(q);
        if qn == 0.0 {
            return None; // no direction, no positive similarity
        }
        let sims: Vec<f64> = g
            .emb
            .chunks(g.dim)
            .map(|e| {
                let en = norm(e);
                e.iter()
                    .zip(q)
                    .map(|(&a, &b)| f64::from(a) * f64::from(b) / (qn * en))
                    .sum::<f64>()
            })
            .collect();
        let mut order: Vec<usize> = (0..probs.len()).collect();
        order.sort_by(|&a, &b| before(probs, a, b));
        let mut cands = Vec::new();
        for &cell in order.iter().take(s.top_cells) {
            let mut rows: Vec<usize> = (0..g.classes.len())
                .filter(|&i| g.classes[i] == cell)
                .collect();
            rows.sort_by(|&a, &b| sims[b].total_cmp(&sims[a]).then(a.cmp(&b)));
            cands.extend(rows.into_iter().take(s.neighbours).map(|i| (i, cell)));
        }
        let score = |&(j, cell): &(usize, usize)| {
            let (la, lo) = g.positions[j];
            f64::from(probs[cell])
                * cands
                    .iter()
                    .map(|&(n, _)| {
                        let (lb, lob) = g.positions[n];
                        sims[n].max(0.0) * (-haversine_km(la, lo, lb, lob) / s.temperature_km).exp()
                    })
                    .sum::<f64>()
        };
        cands
            .iter()
            .map(|c| (score(c), c.0))
            .filter(|&(sc, _)| sc > 0.0)
            .max_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)))
            .map(|(_, row)| row)
    }

    #[test]
    fn random_cases_match_the_slow_reference_and_repeat_exactly() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        // 37 dimensions: two full 16-lane chunks and a tail; more queries than a batch
        // block.
        let (m, k, dim, b) = (400, 15, 37, 2 * QUERY_BLOCK + 6);
        let raw = random_raw(&mut rng, m, k, dim);
        let g = Gallery::new(
            raw.emb.clone(),
            dim,
            raw.classes.clone(),
            raw.positions.clone(),
        )
        .unwrap();
        // Regrouped by class, ascending rows within a class, each slot holding its row.
        for (slot, &row) in g.rows.iter().enumerate() {
            let e = &raw.emb[row * dim..(row + 1) * dim];
            let n = e.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
            for (a, b) in g.stored(slot).iter().zip(e) {
                assert!(
                    (f64::from(*a) - f64::from(*b) / n).abs() < 1e-6,
                    "slot {slot}"
                );
            }
            if slot > 0 {
                let before = g.rows[slot - 1];
                assert!((raw.classes[before], before) < (raw.classes[row], row));
            }
        }
        let mut queries: Vec<f32> = (0..b * dim)
            .map(|i| rng.random_range(-1.0f32..1.0) + if i % dim == 0 { 2.0 } else { 0.0 })
            .collect();
        let mut probs: Vec<Vec<f32>> = (0..b).map(|_| random_probs(&mut rng, k)).collect();
        let plains: Vec<(f64, f64)> = (0..b).map(|_| (50.0, 10.0)).collect();
        // Query 0 has no direction; query 1's two most probable classes have no rows.
        queries[..dim].fill(0.0);
        probs[1].extend([0.9, 0.8]);
        let one_thread = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        for s in [
            settings(3, 4, 100.0),
            settings(5, 16, 50.0),
            settings(1, 1, 10.0),
            settings(20, 50, 300.0),
        ] {
            let batch = refine_batch(&g, &queries, &probs, &plains, &s);
            let serial = one_thread.install(|| refine_batch(&g, &queries, &probs, &plains, &s));
            assert_eq!(batch, serial, "{s:?}: the thread count changed an answer");
            let mut moved = 0;
            for (i, q) in queries.chunks(dim).enumerate() {
                let one = refine(&g, q, &probs[i], plains[i], &s);
                assert_eq!(one, refine(&g, q, &probs[i], plains[i], &s), "query {i}");
                assert_eq!(one, batch[i], "query {i}: batch and single differ");
                assert_eq!(
                    one.neighbour,
                    reference(&raw, q, &probs[i], &s),
                    "query {i} {s:?}"
                );
                moved += usize::from(!one.kept_plain);
            }
            // All but the zero query (and query 1 when only its empty cells are searched).
            let stuck = if s.top_cells <= 2 { 2 } else { 1 };
            assert_eq!(moved, b - stuck, "{s:?}");
            assert!(batch[0].kept_plain, "{s:?}");
            let empty_only = s.top_cells <= 2;
            assert_eq!(batch[1].kept_plain, empty_only, "{s:?}");
            assert_eq!(
                batch[1].cell == k,
                empty_only,
                "{s:?}: top class 15 if kept"
            );
        }
        let none: [Vec<f32>; 0] = [];
        assert_eq!(
            refine_batch(&g, &[], &none, &[], &settings(1, 1, 1.0)),
            vec![]
        );
    }

    #[test]
    fn the_dot_product_matches_a_plain_sum() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for len in [0, 1, 15, 16, 17, 33, 1024] {
            let a: Vec<f32> = (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            let b: Vec<f32> = (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            let want: f64 = a.iter().zip(&b).map(|(&x, &y)| f64::from(x * y)).sum();
            assert!((f64::from(dot(&a, &b)) - want).abs() < 1e-4, "len {len}");
            let fastest = dot_for_this_cpu()(&a, &b);
            assert_eq!(fastest.to_bits(), dot(&a, &b).to_bits(), "len {len}");
        }
    }

    #[test]
    fn vote_distances_are_haversine_distances() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let mut pairs = vec![
            ((0.0, 0.0), (0.0, 0.0)),
            ((45.0, 16.0), (-45.0, -164.0)),
            ((90.0, 0.0), (-90.0, 0.0)),
            ((45.8150, 15.9819), (43.5081, 16.4402)),
            ((10.0, 179.9), (10.0, -179.9)),
            ((50.0, 10.0), (50.0, 10.00001)),
        ];
        for _ in 0..200 {
            let mut p = || {
                (
                    rng.random_range(-90.0..=90.0),
                    rng.random_range(-180.0..180.0),
                )
            };
            pairs.push((p(), p()));
        }
        for ((la, lo), (lb, lob)) in pairs {
            let want = haversine_km(la, lo, lb, lob);
            let got = chord_km(unit_vector(la, lo), unit_vector(lb, lob));
            assert!(
                (got - want).abs() < 1e-9 * want.max(1.0),
                "({la}, {lo})–({lb}, {lob}): {got} vs {want}"
            );
        }
    }

    #[test]
    fn settings_are_validated() {
        assert_eq!(settings(5, 16, 100.0).validate(), Ok(()));
        type Breaker = fn(&mut RefineSettings);
        let cases: [(Breaker, &str); 7] = [
            (|s| s.top_cells = 0, "top_cells must be at least 1, got 0"),
            (|s| s.neighbours = 0, "neighbours must be at least 1, got 0"),
            (
                |s| s.temperature_km = 0.0,
                "temperature_km must be positive and finite, got 0",
            ),
            (
                |s| s.temperature_km = -1.0,
                "temperature_km must be positive and finite",
            ),
            (
                |s| s.temperature_km = f64::INFINITY,
                "temperature_km must be positive and finite, got inf",
            ),
            (
                |s| s.max_move_km = 0.0,
                "max_move_km must be positive (inf for no limit), got 0",
            ),
            (
                |s| s.max_move_km = f64::NAN,
                "max_move_km must be positive (inf for no limit), got NaN",
            ),
        ];
        for (break_it, want) in cases {
            let mut s = settings(5, 16, 100.0);
            break_it(&mut s);
            let err = s.validate().expect_err(want).to_string();
            assert!(err.contains(want), "{err:?} lacks {want:?}");
        }
    }

    #[test]
    #[should_panic(expected = "refinement: neighbours must be at least 1")]
    fn refine_refuses_invalid_settings() {
        refine(
            &two_cells(),
            &QUERY,
            &TWO_CELL_PROBS,
            (0.0, 0.0),
            &settings(1, 0, 1.0),
        );
    }

    #[test]
    fn galleries_refuse_inconsistent_or_non_finite_data() {
        let ok_pos = vec![(0.0, 0.0), (1.0, 1.0)];
        let err = |e: Vec<f32>, dim, c: Vec<usize>, p: Vec<(f64, f64)>| {
            Gallery::new(e, dim, c, p).unwrap_err().to_string()
        };
        assert_eq!(
            err(vec![1.0; 4], 0, vec![0, 0], ok_pos.clone()),
            "refinement gallery: the embedding dimension must be at least 1"
        );
        assert_eq!(
            err(vec![], 3, vec![], vec![]),
            "refinement gallery: no training locations"
        );
        assert_eq!(
            err(vec![1.0; 5], 2, vec![0, 0], ok_pos.clone()),
            "refinement gallery: 5 embedding values are not a whole number of rows of 2"
        );
        assert_eq!(
            err(vec![1.0; 4], 2, vec![0], ok_pos.clone()),
            "refinement gallery: 1 classes for 2 embedding rows"
        );
        assert_eq!(
            err(vec![1.0; 4], 2, vec![0, 1], vec![(0.0, 0.0)]),
            "refinement gallery: 1 positions for 2 embedding rows"
        );
        assert_eq!(
            err(vec![1.0, 1.0, 1.0, f32::NAN], 2, vec![0, 1], ok_pos.clone()),
            "refinement gallery row 1: embedding component 1 is NaN, not a finite number"
        );
        assert_eq!(
            err(
                vec![1.0; 4],
                2,
                vec![0, 1],
                vec![(0.0, 0.0), (2.0, f64::INFINITY)]
            ),
            "refinement gallery row 1: longitude is inf, not a finite number"
        );
        assert_eq!(
            err(vec![1.0; 4], 2, vec![0, 1], vec![(-90.5, 0.0), (2.0, 0.0)]),
            "refinement gallery row 0: latitude -90.5 is outside [-90, 90]"
        );
        // A zero row is allowed: similarity 0 to everything.
        let g = Gallery::new(vec![0.0, 0.0, 1.0, 0.0], 2, vec![4, 1], ok_pos).unwrap();
        assert_eq!(
            (g.len(), g.dim(), g.rows_of(4), g.rows_of(1)),
            (2, 2, &[0][..], &[1][..])
        );
    }
}
