//! What a server is started with. The command line fills it from flags and `GEOEXP_SERVE_*`
//! variables; tests build it directly.

use std::net::IpAddr;
use std::path::PathBuf;

/// Server settings.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Address to listen on; loopback unless the user opens it up.
    pub host: IpAddr,
    /// Port (0: any free port, reported once bound).
    pub port: u16,
    /// Checkpoints served, as `<name>.safetensors`; nothing outside it is opened.
    pub models_dir: PathBuf,
    /// The only tree `predict-directory` may read; `None` disables the endpoint.
    pub data_root: Option<PathBuf>,
    /// Most locations in one forward pass; concurrent requests are batched up to it.
    pub batch_size: usize,
    /// Largest accepted file in an upload, in bytes.
    pub max_upload_bytes: u64,
    /// Most files in one upload.
    pub max_files: usize,
    /// Most models kept loaded; the least recently used is dropped first.
    pub max_models: usize,
    /// Classes listed in each answer.
    pub top_classes: usize,
    /// Requests whose uploads are decoded at the same time (forward passes are batched
    /// per model on their own thread).
    pub workers: usize,
    /// `cpu`, `cuda`, `cuda:N` or `auto`.
    pub device: String,
    /// Images declaring more million pixels than this are refused (400) before decoding.
    pub max_megapixels: u64,
}

impl ServeConfig {
    /// Defaults for serving `models_dir` on loopback port 8098, the seed's port.
    pub fn new(models_dir: PathBuf) -> Self {
        ServeConfig {
            host: IpAddr::from([127, 0, 0, 1]),
            port: DEFAULT_PORT,
            models_dir,
            data_root: None,
            batch_size: 32,
            max_upload_bytes: 20 * 1024 * 1024,
            max_files: 16,
            max_models: 4,
            top_classes: 5,
            workers: 2,
            device: "auto".into(),
            max_megapixels: crate::images::decode::MAX_PIXELS / 1_000_000,
        }
    }

    /// The largest request body the limits allow: every file at its limit, plus room for
    /// the multipart framing.
    pub fn max_body_bytes(&self) -> usize {
        const FRAMING: u64 = 64 * 1024;
        let total = self
            .max_upload_bytes
            .saturating_add(FRAMING)
            .saturating_mul(self.max_files.max(1) as u64);
        usize::try_from(total).unwrap_or(usize::MAX)
    }
}

/// The seed's server port.
pub const DEFAULT_PORT: u16 = 8098;
