//! One image file → one `side×side` RGB u8 view, HWC.
//!
//! The geometry is torchvision's `Resize(side)` (shorter side to `side`, antialiased
//! bilinear) followed by `CenterCrop(side)`, so a model trained here sees what the same
//! model sees in a PyTorch pipeline. Both steps are one `fast_image_resize` call with a
//! fractional source crop box: resizing only the kept region gives the same pixels as
//! resizing everything and cropping, without the intermediate image.
//!
//! JPEGs are decoded by `jpeg-decoder` at the smallest DCT scale (1/8, 1/4, 1/2, 1) that
//! still leaves the shorter side at least `side`: a 640 px view needed at 112 px is
//! decoded at 160 px, which skips most of the IDCT and colour conversion and leaves the
//! resampler a quarter of the input. PNGs, and JPEGs `jpeg-decoder` cannot handle
//! (unsupported features, CMYK, 16-bit), go through the `image` crate at full size.
//!
//! This module reads files and returns pixels; it never writes anything.

use std::cell::RefCell;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use fast_image_resize::images::Image;
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

use super::error::ImagesError;

/// The largest output side: `jpeg-decoder` takes requested sizes as `u16`.
pub const MAX_SIDE: u32 = u16::MAX as u32;

/// The default limit on the pixels an image may declare: images over it are refused
/// before any pixel is decoded, by every path (the images stage, `predict`, `serve`). A
/// street view is a few megapixels, and a header is all a decompression bomb needs to
/// claim gigapixels. Each path can raise or lower it (`dataset.max_image_megapixels`,
/// `--max-megapixels`).
pub const MAX_PIXELS: u64 = 64_000_000;

/// How to decode a view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeOptions {
    /// Output side in pixels (the output is `side×side×3`).
    pub side: u32,
    /// How JPEGs are decoded.
    pub jpeg: JpegMode,
    /// Images declaring more pixels than this are refused before decoding.
    pub max_pixels: u64,
    /// The resampling filter.
    pub resample: Resample,
}

/// The resampling filter of the resize.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Resample {
    /// Antialiased bilinear, torchvision's `Resize` default (CNNs).
    #[default]
    Bilinear,
    /// Antialiased bicubic (Catmull-Rom, PIL's `BICUBIC`), the CLIP and DINOv2 processors'
    /// filter.
    Bicubic,
}

impl Resample {
    /// The filter the family of backbone `name` was trained with.
    pub fn for_backbone(name: &str) -> Resample {
        match crate::vocab::architecture(name) {
            Some(a) if a.vit().is_some() => Resample::Bicubic,
            _ => Resample::Bilinear,
        }
    }
}

/// How JPEGs are decoded; only [`JpegMode::DctScaled`] is meant for real use, the
/// others exist to measure it against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum JpegMode {
    /// `jpeg-decoder` at the smallest DCT scale that still covers `side`.
    #[default]
    DctScaled,
    /// `jpeg-decoder` at full size, then resized.
    Full,
    /// The `image` crate (zune-jpeg) at full size, then resized.
    Zune,
}

impl DecodeOptions {
    /// Options for `side`, JPEGs decoded DCT-scaled.
    pub fn new(side: u32) -> Self {
        DecodeOptions {
            side,
            jpeg: JpegMode::DctScaled,
            max_pixels: MAX_PIXELS,
            resample: Resample::Bilinear,
        }
    }

    /// The same, resizing with `resample`.
    pub fn with_resample(mut self, resample: Resample) -> Self {
        self.resample = resample;
        self
    }

    /// The same, refusing images that declare more than `megapixels` million pixels.
    pub fn with_max_megapixels(mut self, megapixels: u64) -> Self {
        self.max_pixels = megapixels.saturating_mul(1_000_000);
        self
    }

    /// Bytes in one decoded view.
    pub fn view_bytes(&self) -> usize {
        self.side as usize * self.side as usize * 3
    }
}

/// Decodes one image file (JPEG or PNG, by content not extension) to RGB u8, HWC,
/// `side×side`: aspect-preserving resize of the shorter side to `side` (antialiased
/// bilinear, like torchvision `Resize(side, antialias=True)`), then a centre crop
/// (like torchvision `CenterCrop(side)`).
///
/// JPEGs are decoded at the smallest DCT scale whose shorter side is still `>= side`.
pub fn decode_view(path: &Path, side: u32) -> Result<Vec<u8>, ImagesError> {
    let opts = DecodeOptions::new(side);
    check_side(side)?;
    let mut out = vec![0; opts.view_bytes()];
    decode_view_into(path, opts, &mut out)?;
    Ok(out)
}

/// Like [`decode_view`], writing into `out`, which must hold exactly
/// [`DecodeOptions::view_bytes`] bytes; lets a caller decode straight into a batch buffer.
///
/// # Panics
///
/// If `out` has the wrong length (a caller bug, not bad data).
pub fn decode_view_into(
    path: &Path,
    opts: DecodeOptions,
    out: &mut [u8],
) -> Result<(), ImagesError> {
    check_side(opts.side)?;
    let bytes = read_file(path)?;
    decode_bytes_into(path, &bytes, opts, out)
}

/// Like [`decode_view_into`] for an image already in memory (an upload); `name` stands for
/// the file in error messages. Decoding is by content, exactly as for a file, so a view
/// decoded from bytes equals the same view decoded from disk.
///
/// # Panics
///
/// If `out` has the wrong length (a caller bug, not bad data).
pub fn decode_bytes_into(
    name: &Path,
    bytes: &[u8],
    opts: DecodeOptions,
    out: &mut [u8],
) -> Result<(), ImagesError> {
    check_side(opts.side)?;
    assert_eq!(
        out.len(),
        opts.view_bytes(),
        "output buffer must hold side×side×3 bytes"
    );
    let src = decode_bytes(name, bytes, opts)?;
    resize_crop(name, src, opts, out)
}

/// Rejects sides the decoder cannot request.
pub(crate) fn check_side(side: u32) -> Result<(), ImagesError> {
    if side == 0 || side > MAX_SIDE {
        return Err(ImagesError::Side {
            side,
            max: MAX_SIDE,
        });
    }
    Ok(())
}

fn read_file(path: &Path) -> Result<Vec<u8>, ImagesError> {
    // Opening and reading are separate so the error says which step failed
    // (a missing file reads differently from an I/O error on a present one).
    let mut file = File::open(path).map_err(|source| ImagesError::Open {
        path: path.to_owned(),
        source,
    })?;
    let mut bytes = Vec::with_capacity(file.metadata().map_or(0, |m| m.len() as usize));
    file.read_to_end(&mut bytes)
        .map_err(|source| ImagesError::Read {
            path: path.to_owned(),
            source,
        })?;
    Ok(bytes)
}

/// A decoded (possibly DCT-scaled) RGB image and where it sits in the original.
struct Decoded {
    width: u32,
    height: u32,
    rgb: Vec<u8>,
    /// Original width and height as stored in the file.
    full: (u32, u32),
    /// Decoded pixels per original pixel (1/8, 1/4, 1/2 or 1).
    scale: f64,
}

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

fn decode_bytes(path: &Path, bytes: &[u8], opts: DecodeOptions) -> Result<Decoded, ImagesError> {
    let fail = |reason: String| ImagesError::Decode {
        path: path.to_owned(),
        reason,
    };
    if bytes.is_empty() {
        return Err(fail("truncated (the file is empty)".into()));
    }
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        if opts.jpeg == JpegMode::Zune {
            return decode_with_image(path, bytes, image::ImageFormat::Jpeg, opts);
        }
        decode_jpeg(path, bytes, opts)
    } else if bytes.starts_with(PNG_SIGNATURE) {
        decode_with_image(path, bytes, image::ImageFormat::Png, opts)
    } else {
        Err(fail("not a JPEG or PNG".into()))
    }
}

fn decode_jpeg(path: &Path, bytes: &[u8], opts: DecodeOptions) -> Result<Decoded, ImagesError> {
    use jpeg_decoder::{Decoder, Error, PixelFormat};

    let fail = |e: Error| ImagesError::Decode {
        path: path.to_owned(),
        reason: match e {
            Error::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
                "truncated".to_owned()
            }
            e => e.to_string(),
        },
    };
    let mut decoder = Decoder::new(bytes);
    match decoder.read_info() {
        Ok(()) => {}
        Err(Error::Unsupported(_)) => {
            return decode_with_image(path, bytes, image::ImageFormat::Jpeg, opts);
        }
        Err(e) => return Err(fail(e)),
    }
    let Some(info) = decoder.info() else {
        return Err(fail(Error::Format("no frame header".into())));
    };
    let full = (u32::from(info.width), u32::from(info.height));
    if full.0 == 0 || full.1 == 0 {
        return Err(empty(path, full));
    }
    check_declared(path, full, opts.max_pixels)?;
    // Every 8×8 block of a JPEG's first component costs at least one bit (its DC code, in
    // any scan order), so a file shorter than that cannot hold the image it declares;
    // decoders fill the rest with black, which must never pass for a view.
    let blocks = u64::from(full.0.div_ceil(8)) * u64::from(full.1.div_ceil(8));
    if (bytes.len() as u64).saturating_mul(8) < blocks {
        return Err(ImagesError::Decode {
            path: path.to_owned(),
            reason: format!(
                "truncated: it declares {}×{} pixels but has only {} bytes, too few to encode them",
                full.0,
                full.1,
                bytes.len()
            ),
        });
    }
    if !matches!(info.pixel_format, PixelFormat::RGB24 | PixelFormat::L8) {
        // CMYK and 16-bit grey are rare in view data; the image crate converts them.
        return decode_with_image(path, bytes, image::ImageFormat::Jpeg, opts);
    }
    if opts.jpeg == JpegMode::DctScaled {
        // jpeg-decoder picks the smallest scale at which *either* requested dimension is
        // reached, so the long side is asked for an unreachable size: only the shorter
        // side decides, and it never drops below `side`.
        let want = opts.side.min(MAX_SIDE) as u16;
        let (w, h) = if full.0 <= full.1 {
            (want, u16::MAX)
        } else {
            (u16::MAX, want)
        };
        decoder.scale(w, h).map_err(fail)?;
    }
    let pixels = match decoder.decode() {
        Ok(p) => p,
        Err(Error::Unsupported(_)) => {
            return decode_with_image(path, bytes, image::ImageFormat::Jpeg, opts);
        }
        Err(e) => return Err(fail(e)),
    };
    let Some(info) = decoder.info() else {
        return Err(fail(Error::Format("no frame header".into())));
    };
    let (width, height) = (u32::from(info.width), u32::from(info.height));
    let rgb = match info.pixel_format {
        PixelFormat::L8 => pixels.iter().flat_map(|&l| [l, l, l]).collect(),
        _ => pixels,
    };
    if rgb.len() < width as usize * height as usize * 3 {
        return Err(fail(Error::Format(
            "decoder returned too few pixels".into(),
        )));
    }
    Ok(Decoded {
        width,
        height,
        rgb,
        full,
        scale: dct_scale(full, (width, height)),
    })
}

/// The DCT scale that turned `full` into `scaled`: jpeg-decoder makes each side
/// `ceil(len * k / 8)`, so the scale is exactly `k/8`, not `scaled/full`.
fn dct_scale(full: (u32, u32), scaled: (u32, u32)) -> f64 {
    for k in [1u32, 2, 4, 8] {
        if full.0.div_ceil(8 / k) == scaled.0 && full.1.div_ceil(8 / k) == scaled.1 {
            return f64::from(k) / 8.0;
        }
    }
    f64::from(scaled.0) / f64::from(full.0)
}

/// Refuses an image whose declared size is over `max_pixels`.
fn check_declared(
    path: &Path,
    (width, height): (u32, u32),
    max_pixels: u64,
) -> Result<(), ImagesError> {
    if u64::from(width) * u64::from(height) > max_pixels {
        return Err(ImagesError::TooLarge {
            path: path.to_owned(),
            width,
            height,
            max: max_pixels / 1_000_000,
        });
    }
    Ok(())
}

fn decode_with_image(
    path: &Path,
    bytes: &[u8],
    format: image::ImageFormat,
    opts: DecodeOptions,
) -> Result<Decoded, ImagesError> {
    // The header first: nothing is decoded for an image over the limit.
    if let Ok(size) =
        image::ImageReader::with_format(std::io::Cursor::new(bytes), format).into_dimensions()
    {
        check_declared(path, size, opts.max_pixels)?;
    }
    let img = image::load_from_memory_with_format(bytes, format).map_err(|e| {
        let reason = match e {
            image::ImageError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
                "truncated".to_owned()
            }
            e => e.to_string(),
        };
        ImagesError::Decode {
            path: path.to_owned(),
            reason,
        }
    })?;
    let rgb = img.into_rgb8();
    let (width, height) = rgb.dimensions();
    if width == 0 || height == 0 {
        return Err(empty(path, (width, height)));
    }
    Ok(Decoded {
        width,
        height,
        rgb: rgb.into_raw(),
        full: (width, height),
        scale: 1.0,
    })
}

fn empty(path: &Path, (width, height): (u32, u32)) -> ImagesError {
    ImagesError::Empty {
        path: path.to_owned(),
        width,
        height,
    }
}

/// torchvision's geometry on the original image: the region of it that `Resize(side)`
/// then `CenterCrop(side)` keeps, as (left, top, width, height) in original pixels.
fn crop_box(full: (u32, u32), side: u32) -> (f64, f64, f64, f64) {
    let (w, h) = (u64::from(full.0), u64::from(full.1));
    let s = u64::from(side);
    // torchvision: new_short = size, new_long = int(size * long / short).
    let (new_w, new_h) = if w <= h {
        (s, (s * h / w).max(1))
    } else {
        ((s * w / h).max(1), s)
    };
    let (left, top) = (centre_offset(new_w, s), centre_offset(new_h, s));
    let (sx, sy) = (w as f64 / new_w as f64, h as f64 / new_h as f64);
    (
        left * sx,
        top * sy,
        s.min(new_w) as f64 * sx,
        s.min(new_h) as f64 * sy,
    )
}

/// CenterCrop's offset: `int(round((len - side) / 2.0))`, Python rounding half to even.
fn centre_offset(len: u64, side: u64) -> f64 {
    let Some(d) = len.checked_sub(side) else {
        return 0.0;
    };
    let half = d / 2;
    let rounded = if d % 2 == 1 && half % 2 == 1 {
        half + 1
    } else {
        half
    };
    rounded as f64
}

thread_local! {
    // Resizer keeps its convolution buffers between calls; one per rayon worker.
    static RESIZER: RefCell<Resizer> = RefCell::new(Resizer::new());
}

fn resize_crop(
    path: &Path,
    src: Decoded,
    opts: DecodeOptions,
    out: &mut [u8],
) -> Result<(), ImagesError> {
    let side = opts.side;
    let fail = |reason: String| ImagesError::Decode {
        path: path.to_owned(),
        reason,
    };
    let (left, top, width, height) = crop_box(src.full, side);
    // Into decoded coordinates, kept inside the decoded image against rounding.
    let (sw, sh) = (f64::from(src.width), f64::from(src.height));
    let left = (left * src.scale).clamp(0.0, sw);
    let top = (top * src.scale).clamp(0.0, sh);
    let width = (width * src.scale).min(sw - left);
    let height = (height * src.scale).min(sh - top);

    let src_image = Image::from_vec_u8(src.width, src.height, src.rgb, PixelType::U8x3)
        .map_err(|e| fail(format!("decoded buffer: {e}")))?;
    let mut dst = Image::from_slice_u8(side, side, out, PixelType::U8x3)
        .map_err(|e| fail(format!("output buffer: {e}")))?;
    let options = ResizeOptions::new()
        .resize_alg(ResizeAlg::Convolution(match opts.resample {
            Resample::Bilinear => FilterType::Bilinear,
            Resample::Bicubic => FilterType::CatmullRom,
        }))
        .crop(left, top, width, height);
    RESIZER
        .with_borrow_mut(|resizer| resizer.resize(&src_image, &mut dst, &options))
        .map_err(|e| fail(format!("resize: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::test_images::{gradient, save_jpeg, save_png};
    use image::{Rgb, RgbImage};

    fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
        assert_eq!(a.len(), b.len());
        let total: u64 = a
            .iter()
            .zip(b)
            .map(|(&x, &y)| u64::from(x.abs_diff(y)))
            .sum();
        total as f64 / a.len() as f64
    }

    #[test]
    fn output_is_side_by_side_rgb_for_small_and_large_sources() {
        let dir = tempfile::tempdir().unwrap();
        let small = dir.path().join("small.jpg");
        save_jpeg(&gradient(40, 30), &small);
        let large = dir.path().join("large.jpg");
        save_jpeg(&gradient(640, 480), &large);
        for (path, side) in [(&small, 16), (&small, 64), (&large, 112), (&large, 480)] {
            let view = decode_view(path, side).unwrap();
            assert_eq!(
                view.len(),
                side as usize * side as usize * 3,
                "{path:?} {side}"
            );
        }
    }

    #[test]
    fn centre_crop_of_a_wide_image_keeps_the_middle() {
        // 300×100: left third red, middle blue, right third red. The crop of the
        // shorter-side-resized image is exactly the middle third.
        let img = RgbImage::from_fn(300, 100, |x, _| {
            if (100..200).contains(&x) {
                Rgb([0, 0, 255])
            } else {
                Rgb([255, 0, 0])
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wide.png");
        save_png(&img, &path);
        let view = decode_view(&path, 50).unwrap();
        // Away from the edges (bilinear blends one source pixel across the border).
        for y in 0..50 {
            for x in 2..48 {
                let px = &view[(y * 50 + x) * 3..][..3];
                assert_eq!(px, [0, 0, 255], "pixel ({x},{y})");
            }
        }
    }

    #[test]
    fn centre_crop_of_a_tall_image_keeps_the_middle() {
        let img = RgbImage::from_fn(60, 180, |_, y| {
            if (60..120).contains(&y) {
                Rgb([0, 255, 0])
            } else {
                Rgb([255, 255, 255])
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tall.png");
        save_png(&img, &path);
        let view = decode_view(&path, 30).unwrap();
        for y in 1..29 {
            for x in 0..30 {
                assert_eq!(&view[(y * 30 + x) * 3..][..3], [0, 255, 0], "({x},{y})");
            }
        }
    }

    #[test]
    fn crop_box_matches_torchvision_rounding() {
        // Resize(112) of 640×480 → 149×112; CenterCrop: left = round(37/2) = 18 (half to even).
        let (left, top, w, h) = crop_box((640, 480), 112);
        let sx = 640.0 / 149.0;
        assert!((left - 18.0 * sx).abs() < 1e-9);
        assert_eq!(top, 0.0);
        assert!((w - 112.0 * sx).abs() < 1e-9);
        assert!((h - 480.0).abs() < 1e-9);
        assert_eq!(centre_offset(125, 112), 6.0); // 6.5 → 6
        assert_eq!(centre_offset(127, 112), 8.0); // 7.5 → 8
        assert_eq!(centre_offset(100, 112), 0.0);
    }

    #[test]
    fn scaled_jpeg_decode_is_close_to_full_decode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.jpg");
        save_jpeg(&gradient(640, 480), &path);
        for side in [60, 112] {
            let scaled = decode_view(&path, side).unwrap();
            let mut full = vec![0; side as usize * side as usize * 3];
            let opts = DecodeOptions {
                jpeg: JpegMode::Full,
                ..DecodeOptions::new(side)
            };
            decode_view_into(&path, opts, &mut full).unwrap();
            let diff = mean_abs_diff(&scaled, &full);
            assert!(diff < 8.0, "side {side}: mean abs diff {diff}");
        }
    }

    #[test]
    fn jpeg_and_png_of_the_same_picture_agree() {
        let dir = tempfile::tempdir().unwrap();
        let img = gradient(640, 480);
        let (jpg, png) = (dir.path().join("a.jpg"), dir.path().join("a.png"));
        save_jpeg(&img, &jpg);
        save_png(&img, &png);
        let a = decode_view(&jpg, 112).unwrap();
        let b = decode_view(&png, 112).unwrap();
        let diff = mean_abs_diff(&a, &b);
        assert!(diff < 8.0, "mean abs diff {diff}");
    }

    #[test]
    fn format_is_sniffed_from_content_not_extension() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("really_a_png.jpg");
        save_png(&gradient(40, 30), &path);
        assert_eq!(decode_view(&path, 20).unwrap().len(), 20 * 20 * 3);
    }

    #[test]
    fn grey_jpeg_becomes_rgb() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("grey.jpg");
        let grey = image::GrayImage::from_pixel(64, 64, image::Luma([200]));
        grey.save(&path).unwrap();
        let view = decode_view(&path, 32).unwrap();
        assert!(view.iter().all(|&v| v.abs_diff(200) <= 2));
    }

    #[test]
    fn bad_files_give_errors_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.jpg");
        save_jpeg(&gradient(640, 480), &good);
        let bytes = std::fs::read(&good).unwrap();
        let truncated = dir.path().join("truncated.jpg");
        std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
        let garbage = dir.path().join("garbage.jpg");
        std::fs::write(&garbage, b"this is not an image").unwrap();
        let empty = dir.path().join("empty.png");
        std::fs::write(&empty, b"").unwrap();
        let missing = dir.path().join("missing.jpg");

        for path in [&truncated, &garbage, &empty, &missing] {
            let err = decode_view(path, 32).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(&*path.to_string_lossy()), "{msg}");
        }
        let msg = decode_view(&garbage, 32).unwrap_err().to_string();
        assert!(msg.contains("not a JPEG or PNG"), "{msg}");
        let msg = decode_view(&truncated, 32).unwrap_err().to_string();
        assert!(msg.contains("truncated"), "{msg}");
        assert!(matches!(
            decode_view(&missing, 32),
            Err(ImagesError::Open { .. })
        ));
    }

    /// `bytes` with the 16-bit big-endian height and width of a JPEG's first frame header
    /// (SOF0..SOF2) replaced.
    fn with_jpeg_size(bytes: &[u8], width: u16, height: u16) -> Vec<u8> {
        let mut out = bytes.to_vec();
        let at = (0..out.len() - 1)
            .find(|&i| out[i] == 0xFF && (0xC0..=0xC2).contains(&out[i + 1]))
            .expect("a frame header");
        out[at + 5..at + 7].copy_from_slice(&height.to_be_bytes());
        out[at + 7..at + 9].copy_from_slice(&width.to_be_bytes());
        out
    }

    /// `bytes` of a PNG with its IHDR width and height replaced (and its CRC made right).
    fn with_png_size(bytes: &[u8], width: u32, height: u32) -> Vec<u8> {
        fn crc32(data: &[u8]) -> u32 {
            let mut crc = !0u32;
            for &b in data {
                crc ^= u32::from(b);
                for _ in 0..8 {
                    crc = if crc & 1 == 1 {
                        (crc >> 1) ^ 0xEDB8_8320
                    } else {
                        crc >> 1
                    };
                }
            }
            !crc
        }
        let mut out = bytes.to_vec();
        // Signature (8), length (4), "IHDR" (4), then width and height.
        out[16..20].copy_from_slice(&width.to_be_bytes());
        out[20..24].copy_from_slice(&height.to_be_bytes());
        let crc = crc32(&out[12..29]);
        out[29..33].copy_from_slice(&crc.to_be_bytes());
        out
    }

    #[test]
    fn an_image_declaring_more_than_it_can_hold_is_refused_before_decoding() {
        let dir = tempfile::tempdir().unwrap();
        let jpeg = dir.path().join("small.jpg");
        save_jpeg(&gradient(16, 16), &jpeg);
        let jpeg = std::fs::read(&jpeg).unwrap();
        let png = dir.path().join("small.png");
        save_png(&gradient(16, 16), &png);
        let png = std::fs::read(&png).unwrap();
        let decode = |name: &str, bytes: &[u8]| {
            let mut out = vec![0; DecodeOptions::new(32).view_bytes()];
            decode_bytes_into(Path::new(name), bytes, DecodeOptions::new(32), &mut out)
        };
        // A few hundred bytes claiming 30000×30000: refused by its header.
        let bomb = with_jpeg_size(&jpeg, 30_000, 30_000);
        assert!(bomb.len() < 2_000);
        let err = decode("bomb.jpg", &bomb).unwrap_err();
        assert!(matches!(err, ImagesError::TooLarge { .. }), "{err}");
        assert!(err.to_string().contains("30000×30000"), "{err}");
        // Under the pixel limit, but too short for what it declares: an error, never a
        // black view.
        let err = decode("short.jpg", &with_jpeg_size(&jpeg, 4_000, 4_000)).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
        assert!(err.to_string().contains("4000×4000"), "{err}");
        let err = decode("bomb.png", &with_png_size(&png, 10_000, 10_000)).unwrap_err();
        assert!(matches!(err, ImagesError::TooLarge { .. }), "{err}");
        // The originals still decode.
        decode("small.jpg", &jpeg).unwrap();
        decode("small.png", &png).unwrap();
    }

    #[test]
    fn zero_side_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.png");
        save_png(&gradient(8, 8), &path);
        assert!(matches!(
            decode_view(&path, 0),
            Err(ImagesError::Side { side: 0, .. })
        ));
    }
}
