//! Reproducible initialisation: candle's CPU RNG cannot be seeded, so vars are created with
//! whatever candle draws and then overwritten here from a seed.

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::ModelError;

/// Overwrites every var of `varmap` deterministically from `seed`.
///
/// Each var gets its own ChaCha8 stream seeded by `blake3(seed, name)`, so a var's values depend
/// only on the seed and its name, not on which other vars exist or in what order they were
/// made. Values follow torch's default `reset_parameters`:
///
/// | var                                   | values                                        |
/// |---------------------------------------|-----------------------------------------------|
/// | rank ≥ 2 (conv / linear weight)       | uniform(±1/√fan_in), fan_in = ∏ dims[1..]     |
/// | `*.bias` beside a rank ≥ 2 `*.weight` | uniform(±1/√fan_in) of that weight            |
/// | `*.running_var`, other rank-1 weights | 1 (BatchNorm / LayerNorm scale)               |
/// | everything else (BN bias, running_mean) | 0                                           |
///
/// Works on any device: values are generated on the CPU and copied to the var's device and dtype.
pub fn init_seeded(varmap: &VarMap, seed: u64) -> Result<(), ModelError> {
    let vars = varmap
        .data()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    for name in names {
        let var = &vars[name];
        let dims = var.dims().to_vec();
        let numel: usize = dims.iter().product();
        let fan_in = |d: &[usize]| d.iter().skip(1).product::<usize>().max(1) as f32;
        let bound = if dims.len() >= 2 {
            Some(1.0 / fan_in(&dims).sqrt())
        } else if let Some(stem) = name.strip_suffix(".bias") {
            vars.get(&format!("{stem}.weight"))
                .filter(|w| w.rank() >= 2)
                .map(|w| 1.0 / fan_in(w.dims()).sqrt())
        } else {
            None
        };
        let values: Vec<f32> = match bound {
            Some(b) => {
                let mut rng = ChaCha8Rng::from_seed(var_seed(seed, name));
                (0..numel)
                    .map(|_| (rng.random::<f32>() * 2.0 - 1.0) * b)
                    .collect()
            }
            None => {
                let one = name.ends_with(".running_var")
                    || (!name.ends_with(".running_mean") && !name.ends_with(".bias"));
                vec![if one { 1.0 } else { 0.0 }; numel]
            }
        };
        let set = || -> candle_core::Result<()> {
            let t = Tensor::from_vec(values, dims.as_slice(), &Device::Cpu)?
                .to_dtype(var.dtype())?
                .to_device(var.device())?;
            var.set(&t)
        };
        set().map_err(|e| ModelError::SetVar {
            name: name.clone(),
            source: e,
        })?;
    }
    Ok(())
}

/// 32-byte ChaCha seed from the run seed and the var name.
fn var_seed(seed: u64, name: &str) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(b"geoexp init_seeded v1\0");
    h.update(&seed.to_le_bytes());
    h.update(name.as_bytes());
    *h.finalize().as_bytes()
}
