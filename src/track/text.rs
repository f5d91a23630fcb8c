//! Text in PNGs: the public-domain 8×8 bitmap font of `font8x8`, drawn pixel by pixel at an
//! integer scale, so labels render the same everywhere without a system font.

use font8x8::UnicodeFonts;
use plotters::prelude::*;

/// Glyph size in pixels at scale 1.
pub const GLYPH: i32 = 8;

/// Width of `s` in pixels at `scale`.
pub fn text_width(s: &str, scale: i32) -> i32 {
    i32::try_from(s.chars().count()).unwrap_or(i32::MAX / (GLYPH * scale.max(1))) * GLYPH * scale
}

/// Calls `plot(x, y)` for every pixel of `s` drawn with its top left corner at (x, y).
/// Characters the font lacks are drawn as `?`.
pub fn for_each_pixel(s: &str, x: i32, y: i32, scale: i32, mut plot: impl FnMut(i32, i32)) {
    for (i, ch) in (0..).zip(s.chars()) {
        let glyph = font8x8::BASIC_FONTS
            .get(ch)
            .or_else(|| font8x8::LATIN_FONTS.get(ch))
            .or_else(|| font8x8::BASIC_FONTS.get('?'))
            .unwrap_or([0; 8]);
        for (row, bits) in (0..).zip(glyph) {
            for col in 0..GLYPH {
                if bits & (1 << col) == 0 {
                    continue;
                }
                for dy in 0..scale {
                    for dx in 0..scale {
                        plot(x + (i * GLYPH + col) * scale + dx, y + row * scale + dy);
                    }
                }
            }
        }
    }
}

/// Draws `s` on a plotters drawing area.
pub fn draw_text<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    s: &str,
    (x, y): (i32, i32),
    scale: i32,
    colour: &RGBColor,
) {
    for_each_pixel(s, x, y, scale, |px, py| {
        let _ = area.draw_pixel((px, py), colour);
    });
}

/// Cuts `s` to at most `max_px` pixels wide at `scale`, ending in `...` when cut.
pub fn fit(s: &str, scale: i32, max_px: i32) -> String {
    if text_width(s, scale) <= max_px {
        return s.to_owned();
    }
    let room = usize::try_from(max_px / (GLYPH * scale.max(1))).unwrap_or(0);
    let kept: String = s.chars().take(room.saturating_sub(3)).collect();
    format!("{kept}...")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_count_characters_not_bytes() {
        assert_eq!(text_width("km", 1), 16);
        assert_eq!(text_width("0.5°", 2), 64);
    }

    #[test]
    fn pixels_stay_inside_the_text_box() {
        let (mut n, mut max_x, mut max_y) = (0, 0, 0);
        for_each_pixel("A1", 10, 20, 2, |x, y| {
            n += 1;
            max_x = max_x.max(x);
            max_y = max_y.max(y);
            assert!(x >= 10 && y >= 20);
        });
        assert!(n > 0);
        assert!(max_x < 10 + text_width("A1", 2) && max_y < 20 + GLYPH * 2);
    }

    #[test]
    fn long_text_is_cut_with_an_ellipsis() {
        assert_eq!(fit("abcdefghij", 1, 48), "abc...");
        assert_eq!(fit("abc", 1, 48), "abc");
    }
}
