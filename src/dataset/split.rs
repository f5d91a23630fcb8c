//! Subsampling and train/val/test assignment.
//!
//! Locations are ordered by `blake3(seed, uuid)` — a seeded shuffle that depends on the
//! set of uuids only, never on directory listing or CSV order — then the first
//! `round(n · fraction)` are kept, and of those the first `round(m · train)` are train,
//! the next `round(m · val)` val and the rest test. Exact proportions, like a shuffled
//! slice, and a location added later leaves every other location's split alone.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Which part of the data a location belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Fits the model (and the class centroids and scalers).
    Train,
    /// Picks checkpoints and drives schedules.
    Val,
    /// Reported once, at the end.
    Test,
}

impl Split {
    /// All splits, in order.
    pub const ALL: [Split; 3] = [Split::Train, Split::Val, Split::Test];

    /// Lowercase name, as written in CSVs.
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }

    /// Parses a lowercase name.
    pub fn parse(s: &str) -> Option<Split> {
        Split::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Split fractions (validated to sum to 1 by the experiment loader).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Fractions {
    /// Train fraction.
    pub train: f64,
    /// Val fraction.
    pub val: f64,
}

/// Assigns each uuid a split, or `None` when subsampled out by `fraction`.
pub fn assign(
    uuids: &[&str],
    fractions: Fractions,
    fraction: f64,
    seed: u64,
) -> Vec<Option<Split>> {
    let mut order: Vec<(blake3::Hash, usize)> = uuids
        .iter()
        .enumerate()
        .map(|(i, uuid)| {
            let mut h = blake3::Hasher::new();
            h.update(&seed.to_le_bytes());
            h.update(uuid.as_bytes());
            (h.finalize(), i)
        })
        .collect();
    order.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()).then(a.1.cmp(&b.1)));
    let n = uuids.len();
    let [n_train, n_val, n_test] = counts(n, fractions, fraction);
    let kept = n_train + n_val + n_test;
    let mut out = vec![None; n];
    for (rank, (_, i)) in order.into_iter().enumerate().take(kept) {
        out[i] = Some(if rank < n_train {
            Split::Train
        } else if rank < n_train + n_val {
            Split::Val
        } else {
            Split::Test
        });
    }
    out
}

/// How many of `n` locations [`assign`] puts in train, val and test.
pub fn counts(n: usize, fractions: Fractions, fraction: f64) -> [usize; 3] {
    let kept = if n == 0 {
        0
    } else {
        ((n as f64 * fraction).round() as usize).clamp(1, n)
    };
    let n_train = ((kept as f64 * fractions.train).round() as usize).min(kept);
    let n_train = if fractions.train > 0.0 {
        n_train.max(1)
    } else {
        n_train
    };
    let n_val = ((kept as f64 * fractions.val).round() as usize).min(kept - n_train);
    [n_train, n_val, kept - n_train - n_val]
}

/// Why a split cannot train and evaluate a model, if it cannot: every split needs a
/// location (train fits, val selects the best epoch, test scores it).
pub fn unusable(counts: [usize; 3]) -> Option<String> {
    let [train, val, test] = counts;
    (train == 0 || val == 0 || test == 0).then(|| {
        format!(
            "the split gives {train} train, {val} val and {test} test locations, and every split \
             needs at least one (train fits the model, val picks the best epoch, test scores it); \
             use more locations, a larger dataset.fraction, or other dataset.split fractions"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const F: Fractions = Fractions {
        train: 0.8,
        val: 0.1,
    };

    fn uuids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("uuid-{i:05}")).collect()
    }

    fn count(splits: &[Option<Split>], s: Split) -> usize {
        splits.iter().filter(|x| **x == Some(s)).count()
    }

    #[test]
    fn proportions_are_exact_after_rounding() {
        let ids = uuids(1500);
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let s = assign(&refs, F, 1.0, 7);
        assert_eq!(
            (
                count(&s, Split::Train),
                count(&s, Split::Val),
                count(&s, Split::Test)
            ),
            (1200, 150, 150)
        );
    }

    #[test]
    fn the_same_seed_gives_the_same_split_whatever_the_listing_order() {
        let ids = uuids(300);
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let a = assign(&refs, F, 1.0, 7);
        let mut reversed = refs.clone();
        reversed.reverse();
        let mut b = assign(&reversed, F, 1.0, 7);
        b.reverse();
        assert_eq!(a, b);
        assert_ne!(a, assign(&refs, F, 1.0, 8));
    }

    #[test]
    fn fraction_subsamples_before_splitting() {
        let ids = uuids(1000);
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let s = assign(&refs, F, 0.25, 1);
        assert_eq!(s.iter().filter(|x| x.is_some()).count(), 250);
        assert_eq!(count(&s, Split::Train), 200);
        // A smaller fraction keeps a subset of a larger one's locations.
        let half = assign(&refs, F, 0.5, 1);
        assert!(s.iter().zip(&half).all(|(a, b)| a.is_none() || b.is_some()));
    }

    #[test]
    fn a_tiny_dataset_still_gets_a_training_location() {
        let s = assign(&["a"], F, 1.0, 0);
        assert_eq!(s, [Some(Split::Train)]);
    }
}
