//! Turning a network's outputs into an answer: [`read_outputs`] gives positions in degrees
//! (for a classifier, the probability-weighted mean of class centroids), [`rank_of`] the rank
//! of the true class (for top-k accuracy).
//!
//! Plain slices in, plain numbers out: a softmax row is copied to the host once and the
//! centroid and rank functions run on it. Ties are broken by class index (lower first), so results do not
//! depend on sort stability or on the device that produced the probabilities; NaN counts as
//! the highest probability (IEEE total order), which keeps a broken model visibly wrong
//! rather than silently skipping classes.

use std::cmp::Ordering;

use candle_core::{D, DType, Tensor};

use crate::geo::{Projection, ProjectionError};
use crate::vocab::Task;

use super::checkpoint::ModelInfo;

/// Why outputs could not be read as positions.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PredictError {
    /// The network's forward pass (or building its input batch) failed.
    #[error("running the network: {0}")]
    Forward(#[source] candle_core::Error),
    /// A tensor operation failed.
    #[error("reading the model's outputs: {0}")]
    Tensor(#[from] candle_core::Error),
    /// Positions could not be projected back to degrees.
    #[error("projecting predictions back to degrees: {0}")]
    Projection(#[from] ProjectionError),
}

/// The network's outputs for a batch, read.
#[derive(Clone, Debug, PartialEq)]
pub struct Outputs {
    /// `(lat, lon)` per location.
    pub positions: Vec<(f64, f64)>,
    /// Softmax rows per location (classification only).
    pub probs: Option<Vec<Vec<f32>>>,
}

/// Reads raw outputs `y` `[B, outputs]` of a model described by `info` as positions: the
/// probability-weighted mean of class centroids (classification, `info.top_k` classes), or
/// the unscaled projected coordinates (regression), projected back to degrees.
///
/// # Errors
/// A tensor operation or the inverse projection failed.
pub fn read_outputs(
    info: &ModelInfo,
    projection: &dyn Projection,
    y: &Tensor,
) -> Result<Outputs, PredictError> {
    let (mut xy, probs) = if info.task == Task::Classification {
        let probs = candle_nn::ops::softmax(y, D::Minus1)?.to_vec2::<f32>()?;
        let centroids: Vec<[f64; 2]> = info.centroids.iter().map(|c| [c[2], c[3]]).collect();
        let xy: Vec<(f64, f64)> = probs
            .iter()
            .map(|p| {
                let [x, y] = weighted_centroid(p, &centroids, info.top_k);
                (x, y)
            })
            .collect();
        (xy, Some(probs))
    } else {
        let [x_min, x_max, y_min, y_max] = info.scaling;
        let xy = y
            .to_dtype(DType::F64)?
            .to_vec2::<f64>()?
            .iter()
            .map(|v| {
                (
                    x_min + v[0] * (x_max - x_min),
                    y_min + v[1] * (y_max - y_min),
                )
            })
            .collect();
        (xy, None)
    };
    projection.inverse(&mut xy)?;
    Ok(Outputs {
        positions: xy.into_iter().map(|(lon, lat)| (lat, lon)).collect(),
        probs,
    })
}

/// Orders class `a` before class `b` when it is more probable, or equally probable with a
/// lower index.
pub(crate) fn before(probs: &[f32], a: usize, b: usize) -> Ordering {
    probs[b].total_cmp(&probs[a]).then(a.cmp(&b))
}

/// Probability-weighted mean of class centroids in projected coordinates (metres): `probs` is
/// one softmax row `[K]`, `centroids_xy` the `K` centroids; `top_k = 0` uses all classes,
/// otherwise only the `k` most probable (all of them if `k ≥ K`), renormalised. Returns
/// `[x, y]`.
///
/// Averaging in a projected CRS rather than in degrees keeps the mean meaningful in
/// distance. If the chosen weights sum to zero the plain mean of their centroids is returned,
/// so the answer stays finite.
///
/// # Panics
///
/// If `probs` and `centroids_xy` differ in length or are empty.
pub fn weighted_centroid(probs: &[f32], centroids_xy: &[[f64; 2]], top_k: usize) -> [f64; 2] {
    assert_eq!(
        probs.len(),
        centroids_xy.len(),
        "one probability per centroid"
    );
    assert!(!probs.is_empty(), "no classes");
    let mut order: Vec<usize> = (0..probs.len()).collect();
    let k = if top_k == 0 {
        probs.len()
    } else {
        top_k.min(probs.len())
    };
    if k < probs.len() {
        order.sort_by(|&a, &b| before(probs, a, b));
        order.truncate(k);
    }
    // f64 sums: thousands of small f32 weights would lose metres in f32.
    let (mut x, mut y, mut total) = (0.0, 0.0, 0.0);
    for &i in &order {
        let w = f64::from(probs[i]);
        x += w * centroids_xy[i][0];
        y += w * centroids_xy[i][1];
        total += w;
    }
    if total > 0.0 {
        [x / total, y / total]
    } else {
        let n = order.len() as f64;
        let sx: f64 = order.iter().map(|&i| centroids_xy[i][0]).sum();
        let sy: f64 = order.iter().map(|&i| centroids_xy[i][1]).sum();
        [sx / n, sy / n]
    }
}

/// 0-based rank of `class` among `probs` (0 = the top-1 prediction): the number of classes
/// ordered before it (more probable, or equally probable with a lower index).
///
/// # Panics
///
/// If `class` is out of range.
pub fn rank_of(probs: &[f32], class: usize) -> usize {
    assert!(
        class < probs.len(),
        "class {class} out of range for {} probabilities",
        probs.len()
    );
    (0..probs.len())
        .filter(|&j| before(probs, j, class) == Ordering::Less)
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CENTROIDS: [[f64; 2]; 3] = [[0.0, 0.0], [10.0, 0.0], [0.0, 20.0]];

    fn assert_xy(got: [f64; 2], want: [f64; 2]) {
        assert!(
            (got[0] - want[0]).abs() < 1e-6 && (got[1] - want[1]).abs() < 1e-6,
            "got {got:?}, want {want:?}"
        );
    }

    #[test]
    fn all_classes_give_the_probability_weighted_mean() {
        // probs sum to 1 in f32 only approximately; weights 0.1, 0.6, 0.3:
        // x = 0.6·10 = 6, y = 0.3·20 = 6
        assert_xy(
            weighted_centroid(&[0.1, 0.6, 0.3], &CENTROIDS, 0),
            [6.0, 6.0],
        );
    }

    #[test]
    fn top_k_keeps_the_most_probable_and_renormalises() {
        // top 2 = classes 1 (0.6) and 2 (0.3) → weights 2/3, 1/3:
        // x = 2/3·10 = 6.6666667, y = 1/3·20 = 6.6666667
        let p = [0.1, 0.6, 0.3];
        assert_xy(
            weighted_centroid(&p, &CENTROIDS, 2),
            [20.0 / 3.0, 20.0 / 3.0],
        );
        assert_xy(weighted_centroid(&p, &CENTROIDS, 1), [10.0, 0.0]);
        // k ≥ K is all classes.
        assert_xy(weighted_centroid(&p, &CENTROIDS, 7), [6.0, 6.0]);
    }

    #[test]
    fn top_k_ties_take_the_lower_class_index() {
        // 0.4 = 0.4: class 0 wins the single slot.
        assert_xy(
            weighted_centroid(&[0.4, 0.4, 0.2], &CENTROIDS, 1),
            [0.0, 0.0],
        );
        // Classes 1 and 2 tie for the second slot and class 1 takes it: classes 0 and 1 with
        // weights 0.5/0.75 = 2/3 and 0.25/0.75 = 1/3 → x = 1/3·10 = 3.3333333, y = 0.
        assert_xy(
            weighted_centroid(&[0.5, 0.25, 0.25], &CENTROIDS, 2),
            [10.0 / 3.0, 0.0],
        );
    }

    #[test]
    fn zero_weights_fall_back_to_the_plain_mean() {
        // (0 + 10 + 0)/3, (0 + 0 + 20)/3
        assert_xy(
            weighted_centroid(&[0.0, 0.0, 0.0], &CENTROIDS, 0),
            [10.0 / 3.0, 20.0 / 3.0],
        );
    }

    #[test]
    fn rank_counts_more_probable_classes() {
        let p = [0.1, 0.6, 0.3];
        assert_eq!(rank_of(&p, 1), 0);
        assert_eq!(rank_of(&p, 2), 1);
        assert_eq!(rank_of(&p, 0), 2);
    }

    #[test]
    fn rank_ties_put_the_lower_index_first() {
        let p = [0.2, 0.4, 0.4];
        assert_eq!(rank_of(&p, 1), 0);
        assert_eq!(rank_of(&p, 2), 1);
        assert_eq!(rank_of(&p, 0), 2);
    }
}
