//! Training-only augmentations of one view, on an `S×S×3` f32 image in 0..1 (HWC).
//!
//! Each view gets its own RNG seeded from (seed, epoch, location, view), so a batch's
//! augmentation does not depend on thread scheduling or on where a resumed run starts.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::experiment::AugmentConfig;

/// Whether `config` changes anything (all-off skips the work).
pub fn is_active(config: &AugmentConfig) -> bool {
    config.crop_scale < 1.0 || config.color_jitter > 0.0 || config.noise_std > 0.0
}

/// A deterministic RNG for one view of one location in one epoch.
pub fn view_rng(seed: u64, epoch: u32, row: usize, view: usize) -> ChaCha8Rng {
    let mut h = blake3::Hasher::new();
    h.update(b"geoexp augment");
    for v in [seed, u64::from(epoch), row as u64, view as u64] {
        h.update(&v.to_le_bytes());
    }
    ChaCha8Rng::from_seed(*h.finalize().as_bytes())
}

/// Applies the configured augmentations in place: random resized crop, colour jitter,
/// Gaussian noise (the order torchvision pipelines usually use).
pub fn augment(img: &mut [f32], side: usize, config: &AugmentConfig, rng: &mut ChaCha8Rng) {
    if config.crop_scale < 1.0 {
        random_resized_crop(img, side, config.crop_scale, rng);
    }
    if config.color_jitter > 0.0 {
        color_jitter(img, config.color_jitter as f32, rng);
    }
    if config.noise_std > 0.0 {
        gaussian_noise(img, config.noise_std as f32, rng);
    }
}

/// torchvision's `RandomResizedCrop(scale=(min_scale, 1), ratio=(3/4, 4/3))`: a crop of
/// random area and aspect, resized back to `side` bilinearly. Falls back to the whole
/// image when ten tries find no crop that fits, as torchvision does (near enough).
fn random_resized_crop(img: &mut [f32], side: usize, min_scale: f64, rng: &mut ChaCha8Rng) {
    let area = (side * side) as f64;
    let (log_lo, log_hi) = ((3.0f64 / 4.0).ln(), (4.0f64 / 3.0).ln());
    let mut crop = None;
    for _ in 0..10 {
        let target = area * rng.random_range(min_scale..=1.0);
        let ratio = rng.random_range(log_lo..=log_hi).exp();
        let w = (target * ratio).sqrt().round() as usize;
        let h = (target / ratio).sqrt().round() as usize;
        if (1..=side).contains(&w) && (1..=side).contains(&h) {
            let x = rng.random_range(0..=side - w);
            let y = rng.random_range(0..=side - h);
            crop = Some((x, y, w, h));
            break;
        }
    }
    let Some((x0, y0, w, h)) = crop else {
        return;
    };
    let src = img.to_vec();
    let at = |x: usize, y: usize, c: usize| src[(y * side + x) * 3 + c];
    for oy in 0..side {
        // Pixel centres map onto the crop like align_corners=False.
        let sy = (y0 as f64 + (oy as f64 + 0.5) * h as f64 / side as f64 - 0.5)
            .clamp(y0 as f64, (y0 + h - 1) as f64);
        let (y_lo, fy) = (sy.floor() as usize, (sy - sy.floor()) as f32);
        let y_hi = (y_lo + 1).min(y0 + h - 1);
        for ox in 0..side {
            let sx = (x0 as f64 + (ox as f64 + 0.5) * w as f64 / side as f64 - 0.5)
                .clamp(x0 as f64, (x0 + w - 1) as f64);
            let (x_lo, fx) = (sx.floor() as usize, (sx - sx.floor()) as f32);
            let x_hi = (x_lo + 1).min(x0 + w - 1);
            for c in 0..3 {
                let top = at(x_lo, y_lo, c) * (1.0 - fx) + at(x_hi, y_lo, c) * fx;
                let bottom = at(x_lo, y_hi, c) * (1.0 - fx) + at(x_hi, y_hi, c) * fx;
                img[(oy * side + ox) * 3 + c] = top * (1.0 - fy) + bottom * fy;
            }
        }
    }
}

/// Brightness, contrast and saturation factors drawn from `[1 − s, 1 + s]`, applied in
/// that order with the blends torchvision's `ColorJitter` uses.
fn color_jitter(img: &mut [f32], strength: f32, rng: &mut ChaCha8Rng) {
    let mut factor = || rng.random_range(1.0 - strength..=1.0 + strength);
    let (brightness, contrast, saturation) = (factor(), factor(), factor());
    let gray = |p: &[f32]| 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
    for v in img.iter_mut() {
        *v = (*v * brightness).clamp(0.0, 1.0);
    }
    let pixels = (img.len() / 3) as f32;
    let mean_gray = img.chunks_exact(3).map(gray).sum::<f32>() / pixels;
    for v in img.iter_mut() {
        *v = (contrast * *v + (1.0 - contrast) * mean_gray).clamp(0.0, 1.0);
    }
    for p in img.chunks_exact_mut(3) {
        let g = gray(p);
        for v in p.iter_mut() {
            *v = (saturation * *v + (1.0 - saturation) * g).clamp(0.0, 1.0);
        }
    }
}

/// Adds N(0, std²) noise (Box–Muller), clamped to 0..1.
fn gaussian_noise(img: &mut [f32], std: f32, rng: &mut ChaCha8Rng) {
    for pair in img.chunks_mut(2) {
        let u1: f32 = rng.random::<f32>().max(f32::MIN_POSITIVE);
        let u2: f32 = rng.random();
        let r = (-2.0 * u1.ln()).sqrt() * std;
        let t = std::f32::consts::TAU * u2;
        let noise = [r * t.cos(), r * t.sin()];
        for (v, n) in pair.iter_mut().zip(noise) {
            *v = (*v + n).clamp(0.0, 1.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(side: usize) -> Vec<f32> {
        (0..side * side * 3)
            .map(|i| ((i / 3) % side) as f32 / side as f32)
            .collect()
    }

    #[test]
    fn off_by_default_and_deterministic_per_view() {
        assert!(!is_active(&AugmentConfig::default()));
        let config = AugmentConfig {
            crop_scale: 0.5,
            color_jitter: 0.3,
            noise_std: 0.05,
        };
        let run = |view| {
            let mut img = gradient(8);
            augment(&mut img, 8, &config, &mut view_rng(1, 2, 3, view));
            img
        };
        assert_eq!(run(0), run(0));
        assert_ne!(run(0), run(1));
        assert!(run(0).iter().all(|v| (0.0..=1.0).contains(v)));
    }

    #[test]
    fn a_full_crop_of_a_constant_image_is_unchanged() {
        let mut img = vec![0.25f32; 6 * 6 * 3];
        random_resized_crop(&mut img, 6, 0.3, &mut view_rng(0, 0, 0, 0));
        assert!(img.iter().all(|v| (v - 0.25).abs() < 1e-6));
    }

    #[test]
    fn jitter_keeps_gray_gray_when_only_saturation_could_change_it() {
        // Saturation blends towards the pixel's own gray, so a gray pixel stays gray; and
        // brightness/contrast move all channels alike.
        let mut img = vec![0.5f32; 4 * 3];
        color_jitter(&mut img, 0.4, &mut view_rng(0, 0, 0, 0));
        for p in img.chunks_exact(3) {
            assert!((p[0] - p[1]).abs() < 1e-6 && (p[1] - p[2]).abs() < 1e-6);
        }
    }

    #[test]
    fn noise_has_roughly_the_asked_spread() {
        let mut img = vec![0.5f32; 30_000];
        gaussian_noise(&mut img, 0.1, &mut view_rng(0, 0, 0, 0));
        let n = img.len() as f32;
        let mean = img.iter().sum::<f32>() / n;
        let var = img.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / n;
        assert!((mean - 0.5).abs() < 0.01, "{mean}");
        assert!((var.sqrt() - 0.1).abs() < 0.01, "{}", var.sqrt());
    }
}
