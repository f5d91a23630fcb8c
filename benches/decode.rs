//! Benchmark of building the image tensor file from 640×640 JPEG views at side 112.
//!
//! Generates `GEOEXP_BENCH_VIEWS` (default 200) synthetic quality-90 JPEGs with structure
//! and noise (flat colour would decode unrealistically fast) into a temp folder, groups
//! them four to a location, then times `build_tensor_file_with` end to end (read, decode,
//! resize, write, rename): with rayon's default threads, with one thread, and with DCT
//! scaling off to show what it buys. Best of `GEOEXP_BENCH_REPEATS` (default 3) runs after
//! a warm-up, so the files are in the page cache. Target on 2 cores: ≥ 632 views/s.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use geoexp::graph::NoTick;
use geoexp::images::{BuildOptions, JpegMode, build_tensor_file_with};
use geoexp::vocab::VIEWS;
use image::{Rgb, RgbImage};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

const SOURCE: u32 = 640;
const SIDE: u32 = 112;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Smooth random texture in 0..1: octaves of bilinearly interpolated random grids
/// (cell 64, 16 and 4 px), like foliage, asphalt or plaster at several scales.
fn value_noise(rng: &mut ChaCha8Rng) -> impl Fn(u32, u32) -> f32 + use<> {
    let octaves: Vec<(u32, Vec<f32>, f32)> = [(64u32, 0.5f32), (16, 0.3), (4, 0.2)]
        .into_iter()
        .map(|(cell, weight)| {
            let n = SOURCE / cell + 2;
            let grid = (0..n * n).map(|_| rng.random::<f32>()).collect();
            (cell, grid, weight)
        })
        .collect();
    move |x, y| {
        octaves
            .iter()
            .map(|(cell, grid, weight)| {
                let n = SOURCE / cell + 2;
                let (gx, gy) = (x / cell, y / cell);
                let (fx, fy) = (
                    (x % cell) as f32 / *cell as f32,
                    (y % cell) as f32 / *cell as f32,
                );
                let at = |i: u32, j: u32| grid[(j * n + i) as usize];
                let top = at(gx, gy) * (1.0 - fx) + at(gx + 1, gy) * fx;
                let bottom = at(gx, gy + 1) * (1.0 - fx) + at(gx + 1, gy + 1) * fx;
                (top * (1.0 - fy) + bottom * fy) * weight
            })
            .sum()
    }
}

/// A street-view-ish picture, varying with `seed`: sky gradient with cloud texture,
/// "buildings" with window grids and textured walls, a textured ground, and per-pixel
/// sensor noise of ±`noise` levels.
fn synthetic(seed: u64, noise: i8) -> RgbImage {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let horizon = rng.random_range(200..400u32);
    let blocks: Vec<(u32, u32, u32, [u8; 3])> = (0..12)
        .map(|_| {
            let x0 = rng.random_range(0..SOURCE);
            let w = rng.random_range(30..160);
            let top = rng.random_range(60..horizon);
            let colour = [rng.random(), rng.random(), rng.random()];
            (x0, w, top, colour)
        })
        .collect();
    let tint: [f32; 3] = [rng.random(), rng.random(), rng.random()];
    let texture = value_noise(&mut rng);
    let mut img = RgbImage::from_fn(SOURCE, SOURCE, |x, y| {
        let fy = y as f32 / SOURCE as f32;
        let t = texture(x, y);
        let mut px = if y < horizon {
            let cloud = 60.0 * t;
            [
                (90.0 + 80.0 * fy) * (0.7 + 0.3 * tint[0]) + cloud,
                (140.0 + 60.0 * fy) * (0.7 + 0.3 * tint[1]) + cloud,
                230.0 - 40.0 * fy + cloud * 0.3,
            ]
        } else {
            let g = 120.0 * t;
            [
                40.0 + g + 60.0 * tint[0],
                40.0 + g + 40.0 * tint[1],
                30.0 + g,
            ]
        };
        for &(x0, w, top, c) in &blocks {
            if x >= x0 && x < x0 + w && y >= top && y < horizon {
                let window = (x - x0) % 14 < 7 && (y - top) % 18 < 9;
                let k = if window { 0.5 } else { 0.7 + 0.6 * t };
                px = [c[0] as f32 * k, c[1] as f32 * k, c[2] as f32 * k];
            }
        }
        Rgb(px.map(|v| v.clamp(0.0, 255.0) as u8))
    });
    if noise > 0 {
        for p in img.pixels_mut() {
            for c in p.0.iter_mut() {
                *c = c.saturating_add_signed(rng.random_range(-noise..=noise));
            }
        }
    }
    img
}

fn write_views(dir: &Path, n: usize, noise: i8) -> Vec<PathBuf> {
    (0..n)
        .into_par_iter()
        .map(|k| {
            let path = dir.join(format!("{k}.jpg"));
            let file = std::fs::File::create(&path).expect("create view");
            let mut writer = std::io::BufWriter::new(file);
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut writer, 90)
                .encode_image(&synthetic(k as u64, noise))
                .expect("encode view");
            path
        })
        .collect()
}

fn time_build(
    views: &[[PathBuf; VIEWS]],
    out: &Path,
    opts: &BuildOptions,
    threads: Option<usize>,
    repeats: usize,
) -> Duration {
    let mut builder = rayon::ThreadPoolBuilder::new();
    if let Some(t) = threads {
        builder = builder.num_threads(t);
    }
    let pool = builder.build().expect("thread pool");
    pool.install(|| {
        build_tensor_file_with(views, out, opts, &NoTick).expect("warm-up build");
        (0..repeats)
            .map(|_| {
                let t = Instant::now();
                build_tensor_file_with(views, out, opts, &NoTick).expect("build");
                t.elapsed()
            })
            .min()
            .unwrap_or_default()
    })
}

fn main() {
    let n = env_usize("GEOEXP_BENCH_VIEWS", 200).div_ceil(VIEWS) * VIEWS;
    let repeats = env_usize("GEOEXP_BENCH_REPEATS", 3).max(1);
    let dir = tempfile::tempdir().expect("temp dir");

    let t = Instant::now();
    let noise = env_usize("GEOEXP_BENCH_NOISE", 3).min(127) as i8;
    let paths = write_views(dir.path(), n, noise);
    let bytes: u64 = paths
        .iter()
        .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
        .sum();
    println!(
        "wrote {n} synthetic {SOURCE}×{SOURCE} q90 JPEGs, noise ±{noise} ({:.0} KiB each) in {:.1} s",
        bytes as f64 / n as f64 / 1024.0,
        t.elapsed().as_secs_f64()
    );
    let views: Vec<[PathBuf; VIEWS]> = paths
        .chunks(VIEWS)
        .map(|c| std::array::from_fn(|v| c[v].clone()))
        .collect();
    let out = dir.path().join("images.safetensors");

    let scaled = BuildOptions::new(SIDE);
    let mut full = BuildOptions::new(SIDE);
    full.decode.jpeg = JpegMode::Full;
    let mut zune = BuildOptions::new(SIDE);
    zune.decode.jpeg = JpegMode::Zune;
    let cores = rayon::current_num_threads();
    let runs = [
        (format!("DCT-scaled, {cores} threads"), scaled, None),
        ("DCT-scaled, 1 thread".to_owned(), scaled, Some(1)),
        (format!("full decode, {cores} threads"), full, None),
        ("full decode, 1 thread".to_owned(), full, Some(1)),
        (format!("zune-jpeg full, {cores} threads"), zune, None),
        ("zune-jpeg full, 1 thread".to_owned(), zune, Some(1)),
    ];
    println!(
        "\nbuild_tensor_file, {} locations × 4 views, {SOURCE} px → {SIDE} px, best of {repeats}",
        views.len()
    );
    println!("{:<28} {:>10} {:>10}", "", "seconds", "views/s");
    for (label, opts, threads) in runs {
        let d = time_build(&views, &out, &opts, threads, repeats).as_secs_f64();
        println!("{label:<28} {d:>10.3} {:>10.0}", n as f64 / d);
    }
    println!("\ntarget: ≥ 632 views/s with all threads on a 2-core machine");
}
