//! `train.device` → a candle device. CUDA exists only in builds with the `cuda` feature;
//! the default build needs no CUDA toolkit and says how to get one that does.

use candle_core::Device;

/// Why the configured device cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    /// CUDA was asked for in a build without it.
    #[error(
        "train.device = {0:?}, but this geoexp was built without CUDA; rebuild with `cargo build --release --features cuda` (needs the CUDA toolkit) or set train.device = \"cpu\""
    )]
    NoCuda(String),
    /// The CUDA device could not be opened.
    #[error("train.device = {spec:?}: {message}")]
    Cuda {
        /// What was configured.
        spec: String,
        /// Candle's error.
        message: String,
    },
}

/// The device for `spec` (`cpu`, `cuda`, `cuda:N`, `auto`); `auto` picks CUDA device 0
/// when this build has CUDA and a GPU is present, else the CPU.
///
/// # Errors
/// CUDA asked for but unavailable.
pub fn select_device(spec: &str) -> Result<Device, DeviceError> {
    let ordinal = match spec {
        "cpu" => return Ok(Device::Cpu),
        "auto" => return Ok(auto()),
        "cuda" => 0,
        other => other
            .strip_prefix("cuda:")
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| DeviceError::Cuda {
                spec: spec.to_owned(),
                message: "not `cpu`, `cuda`, `cuda:N` or `auto`".into(),
            })?,
    };
    if !cfg!(feature = "cuda") {
        return Err(DeviceError::NoCuda(spec.to_owned()));
    }
    Device::new_cuda(ordinal).map_err(|e| DeviceError::Cuda {
        spec: spec.to_owned(),
        message: e.to_string(),
    })
}

/// `auto`: CUDA device 0 when this build has CUDA and the device answers, else the CPU. The
/// log says which (`-v`), and warns when a CUDA build falls back to the CPU.
fn auto() -> Device {
    #[cfg(feature = "cuda")]
    match Device::new_cuda(0) {
        Ok(device) => {
            tracing::info!("train.device = \"auto\": CUDA device 0");
            device
        }
        Err(e) => {
            tracing::warn!("train.device = \"auto\": the CPU (CUDA device 0 did not answer: {e})");
            Device::Cpu
        }
    }
    #[cfg(not(feature = "cuda"))]
    {
        tracing::info!("train.device = \"auto\": the CPU (this geoexp was built without CUDA)");
        Device::Cpu
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_and_auto_work_everywhere() {
        assert!(select_device("cpu").unwrap().is_cpu());
        assert!(select_device("auto").is_ok());
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_says_how_to_get_it() {
        let err = select_device("cuda:1").unwrap_err().to_string();
        assert!(err.contains("--features cuda"), "{err}");
    }
}
