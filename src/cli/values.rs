//! How config values and metrics are written for people (`ls`, `diff`) and for programs
//! (csv, json).
//!
//! Config values are printed exactly (floats round-trip: `0.0003`), because they are what
//! someone typed. Metrics are rounded for reading — kilometres to 2 decimals, anything
//! else to 4 significant digits without dropping integer digits — in tables and text only;
//! csv and json carry every digit.

use serde_json::Value;

/// A table as printed: its lines without trailing blanks, newline-terminated.
pub fn table_text(table: &comfy_table::Table) -> String {
    let mut text: String = table
        .lines()
        .map(|l| l.trim_end().to_owned())
        .collect::<Vec<_>>()
        .join("\n");
    text.push('\n');
    text
}

/// A report as pretty JSON, newline-terminated (every `--format json`).
///
/// # Errors
/// When the value cannot be serialised.
pub fn json_text<T: serde::Serialize>(value: &T) -> serde_json::Result<String> {
    let mut json = serde_json::to_string_pretty(value)?;
    json.push('\n');
    Ok(json)
}

/// Bytes for reading: `13.0 MiB`.
pub fn size(bytes: u64) -> String {
    bytesize::ByteSize(bytes).display().iec().to_string()
}

/// A config value in a table cell: strings bare, numbers round-trip, arrays as JSON.
pub use crate::ops::plain_value as plain;

/// A metric for reading, rounded by its name (see the module docs).
pub fn metric(name: &str, v: &Value) -> String {
    match v {
        Value::Number(n) if n.is_f64() => n
            .as_f64()
            .map_or_else(|| n.to_string(), |x| number(name, x)),
        other => plain(other),
    }
}

/// A float metric, rounded by its name.
pub fn number(name: &str, x: f64) -> String {
    format!("{x:.*}", decimals(name, x))
}

/// A change in a metric with its sign (`+6.60`, `-0.0120`).
pub fn signed(name: &str, x: f64, integral: bool) -> String {
    if integral {
        format!("{x:+.0}")
    } else {
        format!("{x:+.*}", decimals(name, x))
    }
}

fn decimals(name: &str, x: f64) -> usize {
    if name.contains("_km") {
        return 2;
    }
    if x == 0.0 || !x.is_finite() {
        return 0;
    }
    let magnitude = x.abs().log10().floor() as i64;
    (3 - magnitude).clamp(0, 15) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kilometres_get_two_decimals_and_fractions_four_significant_digits() {
        assert_eq!(metric("test/haversine_km_mean", &json!(18.91234)), "18.91");
        assert_eq!(metric("test/acc_25km", &json!(0.8666666)), "0.8667");
        assert_eq!(metric("test/acc_5km", &json!(0.0133333)), "0.01333");
        assert_eq!(metric("test/geoguessr_score", &json!(4938.27)), "4938");
        assert_eq!(metric("test/loss", &json!(12345.6)), "12346");
        assert_eq!(metric("test/acc_1km", &json!(0.0)), "0");
        assert_eq!(metric("best_epoch", &json!(3)), "3");
        assert_eq!(metric("device", &json!("Cpu")), "Cpu");
    }

    #[test]
    fn config_values_print_exactly() {
        assert_eq!(plain(&json!(3e-4)), "0.0003");
        assert_eq!(plain(&json!(0.1 + 0.2)), "0.30000000000000004");
        assert_eq!(plain(&json!("tiny-cnn")), "tiny-cnn");
        assert_eq!(plain(&json!(["a", 1])), r#"["a",1]"#);
    }

    #[test]
    fn changes_carry_their_sign() {
        assert_eq!(signed("test/haversine_km_mean", 6.6, false), "+6.60");
        assert_eq!(signed("test/acc", -0.012, false), "-0.01200");
        assert_eq!(signed("best_epoch", 2.0, true), "+2");
    }
}
