//! Losses: cross entropy (hard labels with optional label smoothing, or soft targets), the
//! PIGEON-style haversine soft targets for geocell classification, and mean squared error for
//! regression heads.
//!
//! The tensor losses are built from candle ops only, so they run (and differentiate) on any
//! device. Half-precision logits are upcast to F32 first: a log-softmax over many classes in
//! F16/BF16 loses most of the small probabilities the loss depends on.

use candle_core::{DType, Result, Tensor};

use crate::geo::{LatLon, haversine_km};

/// Log-softmax over classes, in F32 at least (see the module docs).
fn log_probs(logits: &Tensor) -> Result<Tensor> {
    if logits.rank() != 2 {
        candle_core::bail!(
            "expected logits of shape [batch, classes], got {:?}",
            logits.dims()
        );
    }
    let logits = match logits.dtype() {
        DType::F16 | DType::BF16 => logits.to_dtype(DType::F32)?,
        _ => logits.clone(),
    };
    candle_nn::ops::log_softmax(&logits, 1)
}

/// Mean cross entropy of logits `[B, K]` against class indices `[B]` (an integer dtype, e.g.
/// u32), with label smoothing `ε` as in PyTorch: the target is `(1 − ε)·one_hot + ε/K`, i.e.
/// `(1 − ε)·nll + ε·mean_k(−log p_k)` per sample.
pub fn cross_entropy(logits: &Tensor, targets: &Tensor, label_smoothing: f64) -> Result<Tensor> {
    if !(0.0..=1.0).contains(&label_smoothing) {
        candle_core::bail!("label smoothing must be in [0, 1], got {label_smoothing}");
    }
    let logp = log_probs(logits)?;
    let (batch, classes) = logp.dims2()?;
    if targets.dims() != [batch] {
        candle_core::bail!(
            "expected {batch} class indices for logits {:?}, got shape {:?}",
            logits.dims(),
            targets.dims()
        );
    }
    let picked = logp.gather(&targets.unsqueeze(1)?, 1)?.squeeze(1)?;
    let nll = picked.neg()?.mean(0)?;
    if label_smoothing == 0.0 {
        return Ok(nll);
    }
    // Σ_k −log p_k / K, averaged over the batch.
    let uniform = logp.sum(1)?.mean(0)?.affine(-1.0 / classes as f64, 0.0)?;
    nll.affine(1.0 - label_smoothing, 0.0)? + uniform.affine(label_smoothing, 0.0)?
}

/// Mean cross entropy of logits `[B, K]` against soft targets `[B, K]` whose rows sum to 1:
/// `mean_b(−Σ_k t_bk · log p_bk)`.
pub fn soft_cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let logp = log_probs(logits)?;
    if targets.dims() != logp.dims() {
        candle_core::bail!(
            "soft targets have shape {:?}, logits {:?}",
            targets.dims(),
            logits.dims()
        );
    }
    let targets = targets.to_dtype(logp.dtype())?;
    (targets * logp)?.sum(1)?.mean(0)?.neg()
}

/// PIGEON-style haversine label smoothing. For each sample `b` with true position `x_b` and
/// true class `c_b`, `target_bi ∝ exp(−(d(centroid_i, x_b) − d(centroid_c, x_b)) / tau_km)`,
/// normalised per row; returned row-major as `B·K` values (the caller makes the `[B, K]`
/// tensor).
///
/// The subtracted `d(centroid_c, x)` only scales a row, which normalisation undoes, so the
/// row minimum is subtracted instead: every exponent is then ≤ 0 and nothing overflows even
/// when another centroid is much nearer the point than its own class's.
///
/// # Panics
///
/// If `truth` and `true_class` differ in length, a class index is out of range, or `tau_km`
/// is not positive: these are programming errors in the caller, not data errors.
pub fn haversine_targets(
    centroids: &[LatLon],
    truth: &[LatLon],
    true_class: &[usize],
    tau_km: f64,
) -> Vec<f32> {
    assert_eq!(truth.len(), true_class.len(), "one true class per position");
    assert!(tau_km > 0.0, "tau must be positive, got {tau_km}");
    let k = centroids.len();
    let mut out = Vec::with_capacity(truth.len() * k);
    let mut dist = vec![0.0f64; k];
    for (x, &c) in truth.iter().zip(true_class) {
        assert!(c < k, "class {c} out of range for {k} centroids");
        for (d, centroid) in dist.iter_mut().zip(centroids) {
            *d = haversine_km(centroid.lat, centroid.lon, x.lat, x.lon);
        }
        let nearest = dist.iter().copied().fold(f64::INFINITY, f64::min);
        let weights: Vec<f64> = dist
            .iter()
            .map(|d| (-(d - nearest) / tau_km).exp())
            .collect();
        // ≥ 1: the nearest centroid has weight exp(0).
        let sum: f64 = weights.iter().sum();
        out.extend(weights.iter().map(|w| (w / sum) as f32));
    }
    out
}

/// Mean squared error over all elements; `pred` and `target` must have the same shape (no
/// broadcasting, so a `[B, 1]` against `[B]` mistake is an error, not a `[B, B]` loss).
pub fn mse(pred: &Tensor, target: &Tensor) -> Result<Tensor> {
    if pred.dims() != target.dims() {
        candle_core::bail!(
            "mse: prediction shape {:?} differs from target shape {:?}",
            pred.dims(),
            target.dims()
        );
    }
    (pred - target)?.sqr()?.mean_all()
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    const LN2: f32 = std::f32::consts::LN_2;
    const LN3: f32 = 1.098_612_3;

    /// Row 0 logits 0,0,0 → p = 1/3 each; row 1 logits 0, ln 2, ln 3 → p = 1/6, 2/6, 3/6.
    fn logits() -> Tensor {
        Tensor::new(&[[0.0f32, 0.0, 0.0], [0.0, LN2, LN3]], &Device::Cpu).unwrap()
    }

    fn scalar(t: Tensor) -> f32 {
        t.to_scalar::<f32>().unwrap()
    }

    fn assert_close(got: f32, want: f32) {
        assert!((got - want).abs() < 1e-6, "got {got}, want {want}");
    }

    #[test]
    fn cross_entropy_without_smoothing_is_the_mean_nll() {
        let targets = Tensor::new(&[0u32, 2], &Device::Cpu).unwrap();
        // row 0: −ln(1/3) = 1.0986123; row 1: −ln(3/6) = ln 2 = 0.6931472
        // mean = (1.0986123 + 0.6931472)/2 = 0.8958797
        assert_close(
            scalar(cross_entropy(&logits(), &targets, 0.0).unwrap()),
            0.895_879_7,
        );
    }

    #[test]
    fn cross_entropy_with_smoothing_follows_torch() {
        let targets = Tensor::new(&[0u32, 2], &Device::Cpu).unwrap();
        // ε = 0.1, K = 3. Uniform term mean_k(−ln p_k):
        //   row 0: ln 3 = 1.0986123
        //   row 1: (ln 6 + ln 3 + ln 2)/3 = (1.7917595 + 1.0986123 + 0.6931472)/3 = 1.1945063
        // row 0: 0.9·1.0986123 + 0.1·1.0986123 = 1.0986123
        // row 1: 0.9·0.6931472 + 0.1·1.1945063 = 0.6238325 + 0.1194506 = 0.7432831
        // mean = (1.0986123 + 0.7432831)/2 = 0.9209477
        assert_close(
            scalar(cross_entropy(&logits(), &targets, 0.1).unwrap()),
            0.920_947_7,
        );
    }

    #[test]
    fn cross_entropy_rejects_a_target_count_mismatch() {
        let targets = Tensor::new(&[0u32, 2, 1], &Device::Cpu).unwrap();
        assert!(cross_entropy(&logits(), &targets, 0.0).is_err());
    }

    #[test]
    fn cross_entropy_upcasts_half_precision_logits() {
        let targets = Tensor::new(&[0u32, 2], &Device::Cpu).unwrap();
        let half = logits().to_dtype(DType::BF16).unwrap();
        let loss = cross_entropy(&half, &targets, 0.0).unwrap();
        assert_eq!(loss.dtype(), DType::F32);
        // bf16 rounds ln 2 and ln 3 in the logits, so only roughly 0.8958797.
        assert!((scalar(loss) - 0.895_879_7).abs() < 1e-2);
    }

    #[test]
    fn soft_cross_entropy_weights_log_probs_by_the_targets() {
        let targets = Tensor::new(&[[0.5f32, 0.5, 0.0], [0.0, 0.5, 0.5]], &Device::Cpu).unwrap();
        // row 0: −(0.5·ln(1/3) + 0.5·ln(1/3)) = ln 3 = 1.0986123
        // row 1: −(0.5·ln(2/6) + 0.5·ln(3/6)) = 0.5·(ln 3 + ln 2) = 0.8958797
        // mean = (1.0986123 + 0.8958797)/2 = 0.9972460
        assert_close(
            scalar(soft_cross_entropy(&logits(), &targets).unwrap()),
            0.997_246,
        );
    }

    #[test]
    fn soft_cross_entropy_with_one_hot_targets_equals_cross_entropy() {
        let targets = Tensor::new(&[[1.0f32, 0.0, 0.0], [0.0, 0.0, 1.0]], &Device::Cpu).unwrap();
        // Same as the hard-label case: 0.8958797.
        assert_close(
            scalar(soft_cross_entropy(&logits(), &targets).unwrap()),
            0.895_879_7,
        );
    }

    fn meridian() -> Vec<LatLon> {
        [0.0, 1.0, 2.0].map(|lat| LatLon { lat, lon: 0.0 }).to_vec()
    }

    /// One degree of latitude: 6371.0088 km · π/180 = 111.1950802 km.
    const DEG_KM: f64 = 111.195_080_233_5;

    fn assert_row(got: &[f32], want: &[f32]) {
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "got {got:?}, want {want:?}");
        }
    }

    #[test]
    fn haversine_targets_decay_by_e_per_tau_of_extra_distance() {
        // Truth on centroid 0, tau = 1°: distances 0, 1°, 2° → weights 1, e⁻¹, e⁻²,
        // sum 1 + 0.3678794 + 0.1353353 = 1.5032147
        // → 0.6652410, 0.2447285, 0.0900306
        let t = haversine_targets(&meridian(), &[LatLon { lat: 0.0, lon: 0.0 }], &[0], DEG_KM);
        assert_eq!(t.len(), 3);
        assert_row(&t, &[0.665_241, 0.244_728_5, 0.090_030_6]);
        // The ratios themselves: e⁻¹ = 0.3678794.
        assert!((t[1] / t[0] - 0.367_879_4).abs() < 1e-6);
        assert!((t[2] / t[1] - 0.367_879_4).abs() < 1e-6);
    }

    #[test]
    fn haversine_targets_rows_are_independent_and_normalised() {
        // Row 1: truth at 0.5°, halfway between centroids 0 and 1 (true class 1):
        // distances 0.5°, 0.5°, 1.5° → weights 1, 1, e⁻¹, sum 2.3678794
        // → 0.4223188, 0.4223188, 0.1553624
        let truth = [LatLon { lat: 0.0, lon: 0.0 }, LatLon { lat: 0.5, lon: 0.0 }];
        let t = haversine_targets(&meridian(), &truth, &[0, 1], DEG_KM);
        assert_eq!(t.len(), 6);
        assert_row(&t[..3], &[0.665_241, 0.244_728_5, 0.090_030_6]);
        assert_row(&t[3..], &[0.422_318_8, 0.422_318_8, 0.155_362_4]);
    }

    #[test]
    fn haversine_targets_do_not_overflow_for_a_far_true_class() {
        // True class 2 is 2° away but centroid 0 is on the point; a tiny tau would make
        // exp(+d/tau) overflow without the row-minimum shift.
        let t = haversine_targets(&meridian(), &[LatLon { lat: 0.0, lon: 0.0 }], &[2], 1e-3);
        assert_row(&t, &[1.0, 0.0, 0.0]);
    }

    #[test]
    fn mse_is_the_mean_of_squared_differences() {
        let pred = Tensor::new(&[[1.0f32, 2.0], [3.0, 4.0]], &Device::Cpu).unwrap();
        let target = Tensor::new(&[[1.5f32, 2.0], [1.0, 5.0]], &Device::Cpu).unwrap();
        // (0.25 + 0 + 4 + 1)/4 = 1.3125
        assert_close(scalar(mse(&pred, &target).unwrap()), 1.3125);
    }

    #[test]
    fn mse_refuses_to_broadcast() {
        let pred = Tensor::zeros((2, 1), DType::F32, &Device::Cpu).unwrap();
        let target = Tensor::zeros(2, DType::F32, &Device::Cpu).unwrap();
        assert!(mse(&pred, &target).is_err());
    }
}
