//! Evaluation metrics for one split, accumulated sample by sample and reported by stable
//! name (`BTreeMap<String, f64>`) for the manifest and TensorBoard.
//!
//! | name                  | value                                                        |
//! |-----------------------|--------------------------------------------------------------|
//! | `loss`                | Σ loss / Σ samples, from [`Evaluation::add_loss`]            |
//! | `acc`                 | fraction of ranked samples with rank 0 (top-1)               |
//! | `acc_top5`            | fraction of ranked samples with rank < 5                     |
//! | `haversine_km_mean`   | mean great-circle error                                      |
//! | `haversine_km_median` | median error (mean of the two middle values for even n)      |
//! | `acc_1km` … `acc_100km` | fraction with error ≤ 1, 5, 25, 100 km                     |
//! | `geoguessr_score`     | mean of `5000·exp(−d / 1492.7)`                              |
//! | `country_score`       | mean of `5000·exp(−10·d / S)`, `S` the country's diagonal    |
//!
//! A metric is only reported when it has samples: no ranks (a regression head) means no
//! `acc`/`acc_top5`, no distances (a training epoch) means no distance metrics, and no loss
//! means no `loss`. An empty metric is absent rather than NaN so that it never wins or loses
//! a best-checkpoint comparison.

use std::collections::BTreeMap;

/// Scale of the GeoGuessr world-map score: 5000 points at 0 km, 5000/e at this distance.
pub const GEOGUESSR_SCALE_KM: f64 = 1492.7;

/// Distance thresholds of the `acc_<n>km` metrics.
const DISTANCE_THRESHOLDS_KM: [(f64, &str); 4] = [
    (1.0, "acc_1km"),
    (5.0, "acc_5km"),
    (25.0, "acc_25km"),
    (100.0, "acc_100km"),
];

/// Accumulates per-sample results of one split; see the [module docs](self).
#[derive(Clone, Debug)]
pub struct Evaluation {
    country_diagonal_km: f64,
    errors_km: Vec<f64>,
    ranks: Vec<usize>,
    loss_sum: f64,
    loss_count: usize,
}

impl Evaluation {
    /// An empty accumulator; `country_diagonal_km` scales `country_score`.
    pub fn new(country_diagonal_km: f64) -> Self {
        Evaluation {
            country_diagonal_km,
            errors_km: Vec::new(),
            ranks: Vec::new(),
            loss_sum: 0.0,
            loss_count: 0,
        }
    }

    /// One sample: its great-circle error in km and the rank of its true class (0 = top-1;
    /// `None` for a regression head).
    pub fn add(&mut self, error_km: f64, rank: Option<usize>) {
        self.errors_km.push(error_km);
        if let Some(rank) = rank {
            self.ranks.push(rank);
        }
    }

    /// One classified sample without a distance (training epochs only track accuracy).
    pub fn add_rank(&mut self, rank: usize) {
        self.ranks.push(rank);
    }

    /// A batch's loss: `loss_sum` is the batch mean times `n`, so the reported `loss` is the
    /// per-sample mean whatever the batch sizes.
    pub fn add_loss(&mut self, loss_sum: f64, n: usize) {
        self.loss_sum += loss_sum;
        self.loss_count += n;
    }

    /// Samples with a distance so far.
    pub fn len(&self) -> usize {
        self.errors_km.len()
    }

    /// Whether no sample with a distance was added.
    pub fn is_empty(&self) -> bool {
        self.errors_km.is_empty()
    }

    /// The metrics by name (see the [module docs](self) for which are present).
    pub fn metrics(&self) -> BTreeMap<String, f64> {
        let mut m = BTreeMap::new();
        if self.loss_count > 0 {
            m.insert("loss".into(), self.loss_sum / self.loss_count as f64);
        }
        if !self.ranks.is_empty() {
            m.insert("acc".into(), fraction(&self.ranks, |&r| r == 0));
            m.insert("acc_top5".into(), fraction(&self.ranks, |&r| r < 5));
        }
        let errors = &self.errors_km;
        if errors.is_empty() {
            return m;
        }
        let n = errors.len() as f64;
        m.insert("haversine_km_mean".into(), errors.iter().sum::<f64>() / n);
        m.insert("haversine_km_median".into(), median(errors));
        for (threshold, name) in DISTANCE_THRESHOLDS_KM {
            m.insert(name.into(), fraction(errors, |&d| d <= threshold));
        }
        let score = |scale: f64| {
            errors
                .iter()
                .map(|d| 5000.0 * (-d / scale).exp())
                .sum::<f64>()
                / n
        };
        m.insert("geoguessr_score".into(), score(GEOGUESSR_SCALE_KM));
        m.insert(
            "country_score".into(),
            score(self.country_diagonal_km / 10.0),
        );
        m
    }
}

fn fraction<T>(values: &[T], hit: impl Fn(&T) -> bool) -> f64 {
    values.iter().filter(|v| hit(v)).count() as f64 / values.len() as f64
}

/// Median of a non-empty slice; the mean of the two middle values when the length is even.
fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len().is_multiple_of(2) {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_close(m: &BTreeMap<String, f64>, name: &str, want: f64) {
        let got = m[name];
        assert!((got - want).abs() < 1e-6, "{name}: got {got}, want {want}");
    }

    /// Errors 0.5, 3, 30, 200 km (added out of order); ranks 0, 2, 5, 0; a 1000 km diagonal.
    fn four_samples() -> Evaluation {
        let mut e = Evaluation::new(1000.0);
        e.add(30.0, Some(5));
        e.add(0.5, Some(0));
        e.add(200.0, Some(0));
        e.add(3.0, Some(2));
        e.add_loss(2.0, 3); // a batch of 3 with mean loss 2/3
        e.add_loss(1.0, 1);
        e
    }

    #[test]
    fn four_samples_give_hand_computed_metrics() {
        let m = four_samples().metrics();
        let names: Vec<&str> = m.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "acc",
                "acc_100km",
                "acc_1km",
                "acc_25km",
                "acc_5km",
                "acc_top5",
                "country_score",
                "geoguessr_score",
                "haversine_km_mean",
                "haversine_km_median",
                "loss",
            ]
        );
        assert_close(&m, "loss", 0.75); // (2 + 1)/(3 + 1)
        assert_close(&m, "acc", 0.5); // ranks 0 and 0 of 4
        assert_close(&m, "acc_top5", 0.75); // 0, 2, 0 < 5; 5 is not
        assert_close(&m, "haversine_km_mean", 58.375); // 233.5/4
        assert_close(&m, "haversine_km_median", 16.5); // (3 + 30)/2
        assert_close(&m, "acc_1km", 0.25); // 0.5
        assert_close(&m, "acc_5km", 0.5); // 0.5, 3
        assert_close(&m, "acc_25km", 0.5); // 30 > 25
        assert_close(&m, "acc_100km", 0.75); // 200 > 100
        // 5000·exp(−d/1492.7): 4998.3254630, 4989.9611866, 4900.5140271, 4373.0141878
        // mean = 19261.8148645/4 = 4815.4537161
        assert_close(&m, "geoguessr_score", 4_815.453_716_1);
        // 5000·exp(−10·d/1000) = 5000·exp(−d/100): 4975.0623960, 4852.2276677,
        // 3704.0911034, 676.6764162; mean = 14208.0575833/4 = 3552.0143958
        assert_close(&m, "country_score", 3_552.014_395_8);
    }

    #[test]
    fn a_distance_on_the_threshold_counts_as_within_it() {
        let mut e = Evaluation::new(1000.0);
        e.add(1.0, None);
        e.add(25.0, None);
        let m = e.metrics();
        assert_close(&m, "acc_1km", 0.5);
        assert_close(&m, "acc_25km", 1.0);
        // Odd count: the middle value.
        e.add(7.0, None);
        assert_close(&e.metrics(), "haversine_km_median", 7.0);
    }

    #[test]
    fn regression_samples_report_no_accuracy() {
        let mut e = Evaluation::new(1000.0);
        e.add(10.0, None);
        let m = e.metrics();
        assert!(!m.contains_key("acc") && !m.contains_key("acc_top5"));
        assert!(!m.contains_key("loss"));
        assert_close(&m, "haversine_km_mean", 10.0);
    }

    #[test]
    fn a_training_accumulator_reports_only_loss_and_accuracy() {
        let mut e = Evaluation::new(1000.0);
        e.add_rank(0);
        e.add_rank(3);
        e.add_loss(1.5, 2);
        let m = e.metrics();
        assert_eq!(m.len(), 3);
        assert_close(&m, "loss", 0.75);
        assert_close(&m, "acc", 0.5);
        assert_close(&m, "acc_top5", 1.0);
        assert!(e.is_empty());
    }
}
