//! Views in, a normalised batch out: decoding files or uploaded bytes with the exact
//! geometry training used, and the checkpoint's channel statistics.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use rayon::prelude::*;

use crate::images::{
    ChannelStats, DecodeOptions, ImagesError, decode_bytes_into, decode_view_into,
};
use crate::vocab::VIEWS;

/// Decodes the four views of one location (0°, 90°, 180°, 270°) into `[4, S, S, 3]` u8.
///
/// # Errors
/// The first view that cannot be read or decoded.
pub fn decode_location(
    views: &[PathBuf; VIEWS],
    opts: DecodeOptions,
) -> Result<Vec<u8>, ImagesError> {
    let mut out = vec![0u8; VIEWS * opts.view_bytes()];
    out.par_chunks_mut(opts.view_bytes())
        .zip(views.par_iter())
        .try_for_each(|(dst, path)| decode_view_into(path, opts, dst))?;
    Ok(out)
}

/// Decodes one image held in memory into `[S, S, 3]` u8; `name` names it in errors.
///
/// # Errors
/// When the bytes are not a readable JPEG or PNG.
pub fn decode_upload(
    name: &str,
    bytes: &[u8],
    opts: DecodeOptions,
) -> Result<Vec<u8>, ImagesError> {
    let mut out = vec![0u8; opts.view_bytes()];
    decode_bytes_into(Path::new(name), bytes, opts, &mut out)?;
    Ok(out)
}

/// `[B, 4, 3, S, S]` f32 from `B` decoded locations (`[4, S, S, 3]` u8 each), scaled to
/// 0..1 and normalised by `stats`, exactly as evaluation batches are.
///
/// # Errors
/// When the tensor cannot be created on `device`.
///
/// # Panics
/// If a location does not hold four `side×side` RGB views.
pub fn batch(
    locations: &[&[u8]],
    side: u32,
    stats: &ChannelStats,
    device: &Device,
) -> candle_core::Result<Tensor> {
    let side = side as usize;
    let view = side * side * 3;
    assert!(
        locations.iter().all(|l| l.len() == VIEWS * view),
        "each location holds four side×side RGB views"
    );
    let mut out = vec![0f32; locations.len() * VIEWS * view];
    out.par_chunks_mut(view).enumerate().for_each(|(i, chw)| {
        let hwc = &locations[i / VIEWS][(i % VIEWS) * view..][..view];
        let img: Vec<f32> = hwc.iter().map(|&v| f32::from(v) / 255.0).collect();
        stats.normalise_into(&img, chw);
    });
    Tensor::from_vec(out, (locations.len(), VIEWS, 3, side, side), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_channel_first_and_normalised() {
        // One location, 1×1 views: view v has pixel (10v, 20, 255).
        let loc: Vec<u8> = (0..4u8).flat_map(|v| [10 * v, 20, 255]).collect();
        let stats = ChannelStats {
            mean: [0.0, 0.5, 1.0],
            std: [1.0, 0.5, 2.0],
        };
        let t = batch(&[&loc], 1, &stats, &Device::Cpu).unwrap();
        assert_eq!(t.dims(), [1, 4, 3, 1, 1]);
        let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        // view 2: r = 20/255, g = (20/255 − 0.5)/0.5, b = (1 − 1)/2
        let want = [20.0 / 255.0, (20.0 / 255.0 - 0.5) / 0.5, 0.0];
        for (got, want) in v[6..9].iter().zip(want) {
            assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        }
    }

    #[test]
    fn an_upload_that_is_not_an_image_names_itself() {
        let err = decode_upload("notes.txt", b"hello", DecodeOptions::new(8)).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("notes.txt") && text.contains("not a JPEG or PNG"),
            "{text}"
        );
    }
}
