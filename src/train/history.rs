//! `metrics.csv`: one row per finished epoch, one column per metric.

use std::path::Path;

use super::FitError;
use super::checkpoint::EpochRecord;

/// The table's file name.
pub const METRICS_FILE: &str = "metrics.csv";

/// Writes `history` as `path`: `epoch`, `lr`, then every metric any epoch has, sorted by
/// name; a metric an epoch lacks is an empty cell.
///
/// # Errors
/// The file cannot be written.
pub fn write_metrics(path: &Path, history: &[EpochRecord]) -> Result<(), FitError> {
    crate::graph::write_atomic(path, to_csv(history).as_bytes())?;
    Ok(())
}

fn to_csv(history: &[EpochRecord]) -> String {
    let mut columns: Vec<&String> = history.iter().flat_map(|r| r.metrics.keys()).collect();
    columns.sort();
    columns.dedup();
    let mut out = String::from("epoch,lr");
    for c in &columns {
        out.push(',');
        out.push_str(&quoted(c));
    }
    out.push('\n');
    for r in history {
        out.push_str(&format!("{},{}", r.epoch, r.lr));
        for c in &columns {
            out.push(',');
            if let Some(v) = r.metrics.get(*c) {
                out.push_str(&v.to_string());
            }
        }
        out.push('\n');
    }
    out
}

/// A CSV field, quoted when it holds a separator, a quote or a line break.
fn quoted(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn record(epoch: u32, metrics: &[(&str, f64)]) -> EpochRecord {
        EpochRecord {
            epoch,
            lr: 0.001,
            metrics: metrics
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    #[test]
    fn every_metric_is_a_column_and_missing_ones_are_empty() {
        let history = [
            record(0, &[("train/loss", 2.5), ("val/loss", 3.0)]),
            record(1, &[("train/loss", 1.25), ("val/acc", 0.5)]),
        ];
        assert_eq!(
            to_csv(&history),
            "epoch,lr,train/loss,val/acc,val/loss\n0,0.001,2.5,,3\n1,0.001,1.25,0.5,\n"
        );
    }
}
