//! What the model benches (`step.rs`, `features.rs`) share: knobs read from the
//! environment, and errors turned into candle's.

/// The number in environment variable `name`, or `default`.
pub fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The text in environment variable `name`, or `default`.
pub fn env_str(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

/// Any error as a candle error, so `main` can use `?` throughout.
pub fn fail(e: impl std::fmt::Display) -> candle_core::Error {
    candle_core::Error::Msg(e.to_string())
}
