//! Per-channel normalisation statistics over the training split of an image tensor.
//!
//! Pixel sums are accumulated as integers, so they are exact and the result does not
//! depend on thread count or scheduling; the division into mean and standard deviation
//! happens once, in f64. Chunks are still fixed and summed in order, so the arithmetic is
//! the same on every machine.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::tensor_file::ImageTensor;

/// Locations per parallel task: big enough to amortise scheduling, small enough to
/// balance across cores.
const CHUNK: usize = 64;

/// Per-channel (R, G, B) mean and standard deviation on the 0..1 scale (pixel / 255),
/// as passed to a `Normalize` transform.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct ChannelStats {
    /// Mean of each channel.
    pub mean: [f32; 3],
    /// Population standard deviation of each channel.
    pub std: [f32; 3],
}

impl ChannelStats {
    /// Writes one view, `img` as HWC RGB on the 0..1 scale, into `chw` as CHW normalised by
    /// these statistics: what the network sees in training, evaluation and inference alike.
    /// A channel with zero spread is divided by 1e-6 rather than by zero.
    ///
    /// # Panics
    ///
    /// If `img` and `chw` differ in length or are not a multiple of 3.
    pub fn normalise_into(&self, img: &[f32], chw: &mut [f32]) {
        assert_eq!(img.len(), chw.len(), "one output value per input value");
        assert_eq!(img.len() % 3, 0, "RGB pixels");
        let plane = img.len() / 3;
        for c in 0..3 {
            let (mean, inv_std) = (self.mean[c], 1.0 / self.std[c].max(1e-6));
            for (p, dst) in chw[c * plane..(c + 1) * plane].iter_mut().enumerate() {
                *dst = (img[p * 3 + c] - mean) * inv_std;
            }
        }
    }
}

/// Exact per-channel sums of values and of squared values.
#[derive(Clone, Copy, Default)]
struct Sums {
    count: u128,
    sum: [u128; 3],
    squares: [u128; 3],
}

impl Sums {
    fn add(mut self, other: Sums) -> Sums {
        self.count += other.count;
        for c in 0..3 {
            self.sum[c] += other.sum[c];
            self.squares[c] += other.squares[c];
        }
        self
    }

    fn of_pixels(pixels: &[u8]) -> Sums {
        // u64 cannot overflow within one location: 4·65535²·3 values of at most 255².
        let mut sum = [0u64; 3];
        let mut squares = [0u64; 3];
        for px in pixels.chunks_exact(3) {
            for c in 0..3 {
                let v = u64::from(px[c]);
                sum[c] += v;
                squares[c] += v * v;
            }
        }
        Sums {
            count: (pixels.len() / 3) as u128,
            sum: sum.map(u128::from),
            squares: squares.map(u128::from),
        }
    }
}

/// Per-channel mean and standard deviation over all four views of `locations`
/// (normally the training split): parallel, deterministic.
///
/// An empty selection gives zeros.
///
/// # Panics
///
/// If a location index is out of range for `t`.
pub fn channel_stats(t: &ImageTensor, locations: &[usize]) -> ChannelStats {
    let partials: Vec<Sums> = locations
        .par_chunks(CHUNK)
        .map(|chunk| {
            chunk
                .iter()
                .map(|&i| Sums::of_pixels(t.location(i)))
                .fold(Sums::default(), Sums::add)
        })
        .collect();
    let total = partials.into_iter().fold(Sums::default(), Sums::add);
    if total.count == 0 {
        return ChannelStats {
            mean: [0.0; 3],
            std: [0.0; 3],
        };
    }
    let n = total.count as f64;
    let mut mean = [0.0f32; 3];
    let mut std = [0.0f32; 3];
    for c in 0..3 {
        let m = total.sum[c] as f64 / n;
        // E[x²] − E[x]² is safe here: the sums are exact integers, so there is no
        // cancellation beyond the final f64 rounding; clamp that rounding at zero.
        let var = (total.squares[c] as f64 / n - m * m).max(0.0);
        mean[c] = (m / 255.0) as f32;
        std[c] = (var.sqrt() / 255.0) as f32;
    }
    ChannelStats { mean, std }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::NoTick;
    use crate::images::tensor_file::build_tensor_file;
    use crate::images::test_images::save_png;
    use image::{Rgb, RgbImage};
    use std::path::{Path, PathBuf};

    fn tensor_of(dir: &Path, images: &[RgbImage], side: u32) -> ImageTensor {
        let paths: Vec<PathBuf> = images
            .iter()
            .enumerate()
            .map(|(k, img)| {
                let p = dir.join(format!("{k}.png"));
                save_png(img, &p);
                p
            })
            .collect();
        let views: Vec<[PathBuf; 4]> = paths
            .chunks(4)
            .map(|c| std::array::from_fn(|v| c[v].clone()))
            .collect();
        let out = dir.join("t.safetensors");
        build_tensor_file(&views, side, &out, false, &NoTick).unwrap();
        ImageTensor::open(&out).unwrap()
    }

    fn close(a: [f32; 3], b: [f64; 3]) -> bool {
        a.iter()
            .zip(b)
            .all(|(&x, y)| (f64::from(x) - y).abs() < 1e-6)
    }

    #[test]
    fn constant_colour_has_its_value_as_mean_and_zero_std() {
        let dir = tempfile::tempdir().unwrap();
        let img = RgbImage::from_pixel(20, 20, Rgb([51, 102, 255]));
        let t = tensor_of(dir.path(), &vec![img; 4], 8);
        let s = channel_stats(&t, &[0]);
        assert!(close(s.mean, [0.2, 0.4, 1.0]), "{s:?}");
        assert_eq!(s.std, [0.0; 3]);
    }

    #[test]
    fn two_colours_give_hand_computed_mean_and_std() {
        // Location 0 all black, location 1 all (255, 0, 51): each channel is a
        // two-point distribution with equal weights, so mean = (a+b)/2, std = |a−b|/2.
        let dir = tempfile::tempdir().unwrap();
        let black = RgbImage::from_pixel(16, 16, Rgb([0, 0, 0]));
        let other = RgbImage::from_pixel(16, 16, Rgb([255, 0, 51]));
        let mut images = vec![black; 4];
        images.extend(vec![other; 4]);
        let t = tensor_of(dir.path(), &images, 8);
        let s = channel_stats(&t, &[0, 1]);
        assert!(close(s.mean, [0.5, 0.0, 0.1]), "{s:?}");
        assert!(close(s.std, [0.5, 0.0, 0.1]), "{s:?}");
        // Only the chosen locations count.
        let only_black = channel_stats(&t, &[0]);
        assert_eq!(only_black.mean, [0.0; 3]);
    }

    #[test]
    fn stats_are_the_same_for_any_thread_count() {
        let dir = tempfile::tempdir().unwrap();
        let images: Vec<RgbImage> = (0..8)
            .map(|k| RgbImage::from_fn(12, 9, |x, y| Rgb([(x * 20) as u8, (y * 25) as u8, k * 30])))
            .collect();
        let t = tensor_of(dir.path(), &images, 8);
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
            .install(|| channel_stats(&t, &[1, 0]));
        assert_eq!(one, channel_stats(&t, &[0, 1]));
        assert_eq!(channel_stats(&t, &[]).std, [0.0; 3]);
    }
}
