//! Stage keys: what goes into the content hash that names a cache entry.
//!
//! | component          | source                                   | why                                   |
//! |--------------------|------------------------------------------|---------------------------------------|
//! | format tag         | `KEY_FORMAT`                             | changing this encoding invalidates all |
//! | stage name         | [`Stage::name`](super::Stage::name)      | two stages never share an entry        |
//! | stage version      | [`Stage::version`](super::Stage::version)| code that changes outputs              |
//! | geoexp version     | `CARGO_PKG_VERSION`                      | conservative: a release reruns stages  |
//! | params             | [`Stage::params`](super::Stage::params)  | exactly the config values it reads     |
//! | upstream keys      | keys of the declared upstream stages     | outputs it reads, by their own keys    |
//! | input fingerprints | blake3 of each input file set / digest   | the bytes it reads, not their mtimes   |
//!
//! The encoding is canonical: maps are sorted, every field is tagged and length-prefixed,
//! integers and floats are distinct (`1` ≠ `1.0`), and `-0.0` is `0.0`. Paths of input roots
//! are deliberately absent, so moving a dataset does not invalidate its entries.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Bump when the encoding below changes.
const KEY_FORMAT: &str = "geoexp-stage-key-v1";

/// The version of geoexp that goes into every key.
pub const GEOEXP_VERSION: &str = env!("CARGO_PKG_VERSION");

/// A stage key: the blake3 hash of its [`KeyMaterial`], as 64 hex digits.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StageKey(String);

impl StageKey {
    /// The full hex key.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 12-digit prefix shown to users.
    pub fn short(&self) -> &str {
        &self.0[..12.min(self.0.len())]
    }

    /// Parses a stored key, accepting only 64 lowercase hex digits.
    pub fn parse(s: &str) -> Option<StageKey> {
        (s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        .then(|| StageKey(s.to_owned()))
    }
}

impl fmt::Display for StageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Fingerprint of one declared input.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputFingerprint {
    /// blake3 over the sorted (relative path, content hash) list, or the stage's own digest.
    pub digest: String,
    /// Number of files (0 for a digest input).
    pub files: usize,
}

/// Everything that determines a stage's output; hashed into its [`StageKey`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeyMaterial {
    /// Stage name.
    pub stage: String,
    /// Stage implementation version.
    pub stage_version: u32,
    /// geoexp version.
    pub geoexp_version: String,
    /// Config values read, by key path.
    #[serde(default)]
    pub params: BTreeMap<String, Value>,
    /// Upstream stage name → key.
    #[serde(default)]
    pub upstream: BTreeMap<String, StageKey>,
    /// Input label → fingerprint.
    #[serde(default)]
    pub inputs: BTreeMap<String, InputFingerprint>,
}

impl KeyMaterial {
    /// Hashes the canonical encoding.
    pub fn key(&self) -> StageKey {
        let mut enc = Encoder::default();
        enc.str(KEY_FORMAT);
        enc.str(&self.stage);
        enc.u64(u64::from(self.stage_version));
        enc.str(&self.geoexp_version);
        enc.u64(self.params.len() as u64);
        for (name, value) in &self.params {
            enc.str(name);
            enc.value(value);
        }
        enc.u64(self.upstream.len() as u64);
        for (name, key) in &self.upstream {
            enc.str(name);
            enc.str(key.as_str());
        }
        enc.u64(self.inputs.len() as u64);
        for (label, fp) in &self.inputs {
            enc.str(label);
            enc.str(&fp.digest);
            enc.u64(fp.files as u64);
        }
        StageKey(enc.finish())
    }
}

/// Hashes any JSON value canonically; used for run ids and boundary digests alike.
pub fn digest_value(value: &Value) -> String {
    let mut enc = Encoder::default();
    enc.value(value);
    enc.finish()
}

#[derive(Default)]
struct Encoder {
    hasher: blake3::Hasher,
}

impl Encoder {
    fn tag(&mut self, tag: u8) {
        self.hasher.update(&[tag]);
    }

    fn u64(&mut self, v: u64) {
        self.tag(b'u');
        self.hasher.update(&v.to_le_bytes());
    }

    fn str(&mut self, s: &str) {
        self.tag(b's');
        self.hasher.update(&(s.len() as u64).to_le_bytes());
        self.hasher.update(s.as_bytes());
    }

    fn value(&mut self, value: &Value) {
        match value {
            Value::Null => self.tag(b'n'),
            Value::Bool(b) => {
                self.tag(b'b');
                self.hasher.update(&[u8::from(*b)]);
            }
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    self.tag(b'i');
                    self.hasher.update(&i128::from(i).to_le_bytes());
                } else if let Some(u) = n.as_u64() {
                    self.tag(b'i');
                    self.hasher.update(&i128::from(u).to_le_bytes());
                } else {
                    let f = n.as_f64().unwrap_or(f64::NAN);
                    let f = if f == 0.0 { 0.0 } else { f };
                    self.tag(b'f');
                    self.hasher.update(&f.to_bits().to_le_bytes());
                }
            }
            Value::String(s) => self.str(s),
            Value::Array(items) => {
                self.tag(b'a');
                self.hasher.update(&(items.len() as u64).to_le_bytes());
                items.iter().for_each(|v| self.value(v));
            }
            Value::Object(map) => {
                self.tag(b'o');
                self.hasher.update(&(map.len() as u64).to_le_bytes());
                let mut entries: Vec<_> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                for (k, v) in entries {
                    self.str(k);
                    self.value(v);
                }
            }
        }
    }

    fn finish(self) -> String {
        self.hasher.finalize().to_hex().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn material() -> KeyMaterial {
        KeyMaterial {
            stage: "classes".into(),
            stage_version: 1,
            geoexp_version: "0.1.0".into(),
            params: [("classes.spacing".to_owned(), json!(0.5))].into(),
            upstream: BTreeMap::new(),
            inputs: BTreeMap::new(),
        }
    }

    #[test]
    fn same_material_gives_the_same_key() {
        assert_eq!(material().key(), material().key());
        assert_eq!(material().key().as_str().len(), 64);
    }

    #[test]
    fn every_component_changes_the_key() {
        let base = material().key();
        let mut m = material();
        m.params.insert("classes.spacing".into(), json!(0.3));
        assert_ne!(m.key(), base);
        let mut m = material();
        m.stage_version = 2;
        assert_ne!(m.key(), base);
        let mut m = material();
        m.geoexp_version = "0.2.0".into();
        assert_ne!(m.key(), base);
        let mut m = material();
        m.upstream
            .insert("dataset".into(), StageKey::parse(&"a".repeat(64)).unwrap());
        assert_ne!(m.key(), base);
        let mut m = material();
        m.inputs.insert(
            "boundary".into(),
            InputFingerprint {
                digest: "x".into(),
                files: 0,
            },
        );
        assert_ne!(m.key(), base);
    }

    #[test]
    fn integers_and_floats_hash_differently_but_negative_zero_is_zero() {
        assert_ne!(digest_value(&json!(1)), digest_value(&json!(1.0)));
        assert_eq!(digest_value(&json!(-0.0)), digest_value(&json!(0.0)));
    }

    #[test]
    fn object_key_order_does_not_matter() {
        let a: Value = serde_json::from_str(r#"{"a": 1, "b": [1, 2]}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"b": [1, 2], "a": 1}"#).unwrap();
        assert_eq!(digest_value(&a), digest_value(&b));
    }

    #[test]
    fn string_boundaries_are_unambiguous() {
        let a = json!(["ab", "c"]);
        let b = json!(["a", "bc"]);
        assert_ne!(digest_value(&a), digest_value(&b));
    }

    #[test]
    fn short_key_is_a_twelve_digit_prefix() {
        let k = material().key();
        assert_eq!(k.short(), &k.as_str()[..12]);
        assert!(StageKey::parse("zz").is_none());
    }
}
