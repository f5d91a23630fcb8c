//! Small synthetic pictures for this module's tests.

use std::path::Path;

use image::{Rgb, RgbImage};

/// A smooth two-axis gradient with a diagonal ripple, so resampling errors show.
pub fn gradient(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        let fx = x as f32 / width.max(2) as f32;
        let fy = y as f32 / height.max(2) as f32;
        let ripple = ((x + y) as f32 * 0.15).sin() * 0.5 + 0.5;
        Rgb([
            (fx * 255.0) as u8,
            (fy * 255.0) as u8,
            (ripple * 160.0 + 40.0) as u8,
        ])
    })
}

/// Writes `img` as a quality-90 JPEG.
pub fn save_jpeg(img: &RgbImage, path: &Path) {
    let file = std::fs::File::create(path).unwrap();
    let mut writer = std::io::BufWriter::new(file);
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut writer, 90)
        .encode_image(img)
        .unwrap();
}

/// Writes `img` as a PNG whatever the extension says.
pub fn save_png(img: &RgbImage, path: &Path) {
    img.write_to(
        &mut std::io::BufWriter::new(std::fs::File::create(path).unwrap()),
        image::ImageFormat::Png,
    )
    .unwrap();
}
