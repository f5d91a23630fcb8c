//! Random search: the distributions a `[sweep]` axis may draw from, and seeded sampling of
//! trial points.
//!
//! Each sampling unit (an axis, or a zip group of lists drawn by one shared position) has
//! its own random stream, seeded by `sweep.seed` and the unit's first key, and candidate
//! `j` takes the `j`-th draw of every stream. So adding an axis does not resample the
//! others, and the same definition always gives the same trials. Continuous draws are
//! rounded to [`SIGNIFICANT_DIGITS`] significant digits, so trial ids, manifests and `ls`
//! stay readable; a candidate equal to an earlier one, or matched by an `exclude` entry, is
//! dropped and counted, and drawing goes on until the asked number of distinct trials.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::sweep::{Point, same_value};

/// Significant digits of a `uniform` or `loguniform` draw.
pub const SIGNIFICANT_DIGITS: usize = 3;

/// Candidates drawn per asked trial before sampling gives up on a space too small.
const DRAWS_PER_TRIAL: u64 = 100;

/// A continuous or integer range to draw an axis' values from.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Distribution {
    /// Uniform on `[low, high]`.
    Uniform {
        /// Lower bound.
        low: f64,
        /// Upper bound.
        high: f64,
    },
    /// Uniform in the logarithm on `[low, high]`, both positive.
    LogUniform {
        /// Lower bound.
        low: f64,
        /// Upper bound.
        high: f64,
    },
    /// A whole number in `[low, high]`, both included.
    Int {
        /// Lower bound.
        low: i64,
        /// Upper bound.
        high: i64,
    },
}

/// The names [`Distribution::parse`] knows, for messages.
pub const DISTRIBUTIONS: &str = "\"uniform(a, b)\", \"loguniform(a, b)\", \"int(a, b)\"";

impl Distribution {
    /// The distribution `text` calls for (`uniform(0, 150)`), `None` when `text` is no
    /// distribution's call.
    ///
    /// # Errors
    /// The call's arguments are not two numbers in order, or `loguniform`'s are not
    /// positive.
    pub fn parse(text: &str) -> Option<Result<Distribution, String>> {
        let text = text.trim();
        let open = text.find('(')?;
        let name = text[..open].trim();
        let args = text[open + 1..].strip_suffix(')')?;
        if !matches!(name, "uniform" | "loguniform" | "int") {
            return None;
        }
        let parts: Vec<&str> = args.split(',').map(str::trim).collect();
        let bounds = || -> Result<(f64, f64), String> {
            let [a, b] = parts[..] else {
                return Err(format!("{name}({args}): expected {name}(low, high)"));
            };
            let number = |s: &str| {
                s.parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite())
                    .ok_or_else(|| format!("{name}({args}): `{s}` is not a number"))
            };
            let (low, high) = (number(a)?, number(b)?);
            if low >= high {
                return Err(format!(
                    "{name}({args}): the low bound must be below the high one"
                ));
            }
            Ok((low, high))
        };
        Some(bounds().and_then(|(low, high)| match name {
            "uniform" => Ok(Distribution::Uniform { low, high }),
            "loguniform" if low <= 0.0 => Err(format!(
                "loguniform({args}): both bounds must be positive (it draws the logarithm)"
            )),
            "loguniform" => Ok(Distribution::LogUniform { low, high }),
            _ if low.fract() != 0.0 || high.fract() != 0.0 => {
                Err(format!("int({args}): both bounds must be whole numbers"))
            }
            _ => Ok(Distribution::Int {
                low: low as i64,
                high: high as i64,
            }),
        }))
    }

    /// One draw, rounded as the module docs say.
    fn draw(&self, rng: &mut ChaCha8Rng) -> Value {
        match *self {
            Distribution::Uniform { low, high } => {
                rounded(low + (high - low) * rng.random::<f64>(), low, high)
            }
            Distribution::LogUniform { low, high } => {
                let (a, b) = (low.ln(), high.ln());
                rounded((a + (b - a) * rng.random::<f64>()).exp(), low, high)
            }
            Distribution::Int { low, high } => Value::from(rng.random_range(low..=high)),
        }
    }

    /// Both bounds, as values a key must accept.
    pub fn bounds(&self) -> [Value; 2] {
        match *self {
            Distribution::Uniform { low, high } | Distribution::LogUniform { low, high } => {
                [Value::from(low), Value::from(high)]
            }
            Distribution::Int { low, high } => [Value::from(low), Value::from(high)],
        }
    }

    /// How many distinct values it can give, if that is few enough to count.
    fn size(&self) -> Option<u64> {
        match *self {
            Distribution::Int { low, high } => u64::try_from(high - low).ok()?.checked_add(1),
            _ => None,
        }
    }
}

/// `x` to [`SIGNIFICANT_DIGITS`] significant digits, kept within `[low, high]`.
fn rounded(x: f64, low: f64, high: f64) -> Value {
    let text = format!("{:.*e}", SIGNIFICANT_DIGITS - 1, x);
    let r: f64 = text.parse().unwrap_or(x);
    Value::from(r.clamp(low, high))
}

/// What one random stream draws: a distribution, or a position in lists of values.
#[derive(Clone, Debug)]
pub enum Source<'a> {
    /// One axis drawn from a distribution.
    Distribution(&'a Distribution),
    /// Axes whose values (equally many) are drawn by one shared position.
    Lists(Vec<&'a [Value]>),
}

/// One random stream: the keys it sets and what it draws.
#[derive(Clone, Debug)]
pub struct Unit<'a> {
    /// The keys it sets, first one seeding the stream.
    pub keys: Vec<&'a str>,
    /// What it draws.
    pub source: Source<'a>,
}

impl Unit<'_> {
    fn size(&self) -> Option<u64> {
        match &self.source {
            Source::Distribution(d) => d.size(),
            Source::Lists(lists) => lists.first().map(|l| l.len() as u64),
        }
    }

    fn draw(&self, rng: &mut ChaCha8Rng, point: &mut Point) {
        match &self.source {
            Source::Distribution(d) => point.push((self.keys[0].to_owned(), d.draw(rng))),
            Source::Lists(lists) => {
                let n = lists.first().map_or(0, |l| l.len());
                let i = rng.random_range(0..n.max(1));
                for (key, values) in self.keys.iter().zip(lists) {
                    point.push(((*key).to_owned(), values[i].clone()));
                }
            }
        }
    }
}

/// Sampled trial points and what was dropped on the way.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sampled {
    /// The points, in draw order.
    pub points: Vec<Point>,
    /// Candidates equal to an earlier one.
    pub duplicates: u64,
    /// Candidates an `exclude` entry matched.
    pub excluded: u64,
}

/// `trials` distinct points drawn from `units` with `seed`, dropping candidates for which
/// `excluded` is true.
///
/// # Errors
/// When the units cannot give that many distinct points.
pub fn sample(
    units: &[Unit<'_>],
    trials: u64,
    seed: u64,
    excluded: impl Fn(&Point) -> bool,
) -> Result<Sampled, String> {
    let space = units
        .iter()
        .try_fold(1u64, |n, u| u.size().and_then(|s| n.checked_mul(s)));
    if let Some(space) = space.filter(|&s| s < trials) {
        return Err(format!(
            "{trials} trials asked, but the axes have only {space} distinct combinations"
        ));
    }
    let mut streams: Vec<ChaCha8Rng> = units
        .iter()
        .map(|u| ChaCha8Rng::seed_from_u64(stream_seed(seed, u.keys[0])))
        .collect();
    let mut out = Sampled::default();
    let limit = trials.saturating_mul(DRAWS_PER_TRIAL).max(1000);
    for _ in 0..limit {
        if out.points.len() as u64 == trials {
            return Ok(out);
        }
        let mut point = Point::new();
        for (unit, rng) in units.iter().zip(&mut streams) {
            unit.draw(rng, &mut point);
        }
        if excluded(&point) {
            out.excluded += 1;
        } else if out.points.iter().any(|p| same_point(p, &point)) {
            out.duplicates += 1;
        } else {
            out.points.push(point);
        }
    }
    if out.points.len() as u64 == trials {
        return Ok(out);
    }
    Err(format!(
        "{limit} draws gave only {} distinct trials of the {trials} asked ({} duplicates, {} \
         excluded); widen the axes or ask for fewer trials",
        out.points.len(),
        out.duplicates,
        out.excluded
    ))
}

/// The stream seed of the unit keyed `key`: stable across releases and platforms.
fn stream_seed(seed: u64, key: &str) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(b"geoexp sweep sample v1\0");
    h.update(&seed.to_le_bytes());
    h.update(key.as_bytes());
    let bytes = h.finalize();
    u64::from_le_bytes(bytes.as_bytes()[..8].try_into().unwrap_or_default())
}

fn same_point(a: &Point, b: &Point) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|((ka, va), (kb, vb))| ka == kb && same_value(va, vb))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uniform(low: f64, high: f64) -> Distribution {
        Distribution::Uniform { low, high }
    }

    fn values(points: &[Point], key: &str) -> Vec<Value> {
        points
            .iter()
            .map(|p| p.iter().find(|(k, _)| k == key).unwrap().1.clone())
            .collect()
    }

    #[test]
    fn distributions_parse_and_bad_bounds_say_why() {
        assert_eq!(
            Distribution::parse("loguniform(1e-4, 1e-2)"),
            Some(Ok(Distribution::LogUniform {
                low: 1e-4,
                high: 1e-2
            }))
        );
        assert_eq!(
            Distribution::parse(" int(1, 8) "),
            Some(Ok(Distribution::Int { low: 1, high: 8 }))
        );
        assert_eq!(Distribution::parse("choice(1, 2)"), None);
        assert_eq!(Distribution::parse("normal(0, 1)"), None);
        let err = |t| Distribution::parse(t).unwrap().unwrap_err();
        assert!(err("uniform(5, 1)").contains("low bound must be below"));
        assert!(err("loguniform(0, 1)").contains("must be positive"));
        assert!(err("loguniform(-1, 1)").contains("must be positive"));
        assert!(err("int(1.5, 3)").contains("whole numbers"));
        assert!(err("uniform(1)").contains("expected uniform(low, high)"));
        assert!(err("uniform(a, 2)").contains("`a` is not a number"));
    }

    #[test]
    fn draws_are_rounded_to_three_significant_digits_within_bounds() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let d = Distribution::LogUniform {
            low: 1e-4,
            high: 1e-2,
        };
        for _ in 0..200 {
            let x = d.draw(&mut rng).as_f64().unwrap();
            assert!((1e-4..=1e-2).contains(&x), "{x}");
            let text = format!("{x:e}");
            let mantissa = text.split('e').next().unwrap().replace(['.', '-'], "");
            assert!(mantissa.len() <= SIGNIFICANT_DIGITS, "{x} has more digits");
        }
        assert_eq!(rounded(0.000123456, 0.0, 1.0), Value::from(0.000123));
        assert_eq!(rounded(149.96, 0.0, 150.0), Value::from(150.0));
        assert_eq!(rounded(0.99996, 0.0, 0.9999), Value::from(0.9999));
    }

    #[test]
    fn the_same_seed_gives_the_same_trials_and_adding_an_axis_resamples_nothing() {
        let lr = Distribution::LogUniform {
            low: 1e-4,
            high: 1e-2,
        };
        let tau = uniform(0.0, 150.0);
        let sizes = [Value::from(16), Value::from(32)];
        let one = [Unit {
            keys: vec!["train.lr"],
            source: Source::Distribution(&lr),
        }];
        let a = sample(&one, 10, 7, |_| false).unwrap();
        assert_eq!(a, sample(&one, 10, 7, |_| false).unwrap());
        assert_ne!(a, sample(&one, 10, 8, |_| false).unwrap());
        let three = [
            Unit {
                keys: vec!["train.batch_size"],
                source: Source::Lists(vec![&sizes]),
            },
            Unit {
                keys: vec!["train.haversine_tau_km"],
                source: Source::Distribution(&tau),
            },
            one[0].clone(),
        ];
        let b = sample(&three, 10, 7, |_| false).unwrap();
        assert_eq!(values(&a.points, "train.lr"), values(&b.points, "train.lr"));
    }

    #[test]
    fn duplicates_are_dropped_and_counted_and_a_space_too_small_is_an_error() {
        let d = Distribution::Int { low: 1, high: 3 };
        let unit = [Unit {
            keys: vec!["train.epochs"],
            source: Source::Distribution(&d),
        }];
        let s = sample(&unit, 3, 1, |_| false).unwrap();
        let mut got: Vec<i64> = values(&s.points, "train.epochs")
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        got.sort();
        assert_eq!(got, [1, 2, 3]);
        assert!(s.duplicates > 0, "{s:?}");
        assert_eq!(
            sample(&unit, 4, 1, |_| false).unwrap_err(),
            "4 trials asked, but the axes have only 3 distinct combinations"
        );
        let all_excluded = sample(&unit, 1, 1, |_| true).unwrap_err();
        assert!(
            all_excluded.contains("gave only 0 distinct trials"),
            "{all_excluded}"
        );
    }

    #[test]
    fn zipped_lists_are_drawn_by_one_position() {
        let lrs = [Value::from(0.1), Value::from(0.01), Value::from(0.001)];
        let sizes = [Value::from(8), Value::from(16), Value::from(32)];
        let unit = [Unit {
            keys: vec!["train.lr", "train.batch_size"],
            source: Source::Lists(vec![&lrs, &sizes]),
        }];
        let s = sample(&unit, 3, 3, |_| false).unwrap();
        for p in &s.points {
            let i = lrs.iter().position(|v| *v == p[0].1).unwrap();
            assert_eq!(p[1].1, sizes[i]);
        }
    }
}
