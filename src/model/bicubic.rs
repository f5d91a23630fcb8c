//! Bicubic resizing of a grid of vectors, as torch's
//! `F.interpolate(x, size=(H, W), mode="bicubic", align_corners=False)` (no antialiasing):
//! what Hugging Face's CLIP and DINOv2 do to their position embeddings when the patch grid
//! differs from the one they were trained on. candle has nearest and bilinear resizing only.
//!
//! Along each axis, output index `i` reads the source position `s = (i + ½)·in/out − ½`
//! (scale `in/out` computed in f32, like torch) with the cubic convolution kernel of Keys,
//! `a = −0.75`, on the four inputs `⌊s⌋ − 1 ..= ⌊s⌋ + 2`, indices clamped to the border. The 2-D
//! resize is the product of the two axes' weights, so it is two matrix products: differentiable,
//! and the gradient reaches the embeddings being resized.

use candle_core::{Result, Tensor};

/// torch's `upsample_bicubic2d` coefficient.
const A: f32 = -0.75;

/// Kernel for `|x| ≤ 1`.
fn near(x: f32) -> f32 {
    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
}

/// Kernel for `1 < |x| < 2`.
fn far(x: f32) -> f32 {
    ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A
}

/// The `[output, input]` matrix (row-major) resizing one axis of `input` samples to `output`.
pub(crate) fn weights(input: usize, output: usize) -> Vec<f32> {
    assert!(
        input > 0 && output > 0,
        "resizing {input} → {output} samples"
    );
    let last = input as i64 - 1;
    let scale = input as f32 / output as f32;
    let mut m = vec![0f32; output * input];
    for (i, row) in m.chunks_mut(input).enumerate() {
        let real = scale * (i as f32 + 0.5) - 0.5;
        // torch's guard_index_and_lambda.
        let index = (real.floor() as i64).min(last);
        let t = (real - index as f32).clamp(0.0, 1.0);
        let w = [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)];
        for (j, wj) in w.into_iter().enumerate() {
            row[(index - 1 + j as i64).clamp(0, last) as usize] += wj;
        }
    }
    m
}

/// `grid`: `[h·w, D]`, row `y·w + x` the vector at `(y, x)` → `[H·W, D]` in the same order,
/// resized bicubically (see the module doc).
pub(crate) fn resize_grid(
    grid: &Tensor,
    from: (usize, usize),
    to: (usize, usize),
) -> Result<Tensor> {
    let ((h, w), (nh, nw)) = (from, to);
    let d = grid.dim(1)?;
    let matrix = |input, output| {
        Tensor::from_vec(weights(input, output), (output, input), grid.device())?
            .to_dtype(grid.dtype())
    };
    // Rows: [H, h] · [h, w·D].
    let rows = matrix(h, nh)?.matmul(&grid.reshape((h, w * d))?)?;
    // Columns: [W, w] · [w, H·D].
    let cols = rows
        .reshape((nh, w, d))?
        .transpose(0, 1)?
        .contiguous()?
        .reshape((w, nh * d))?;
    matrix(w, nw)?
        .matmul(&cols)?
        .reshape((nw, nh, d))?
        .transpose(0, 1)?
        .contiguous()?
        .reshape((nh * nw, d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_size_is_the_identity_and_rows_sum_to_one() {
        for n in [1, 3, 7] {
            let m = weights(n, n);
            for (i, row) in m.chunks(n).enumerate() {
                for (j, v) in row.iter().enumerate() {
                    assert_eq!(*v, if i == j { 1.0 } else { 0.0 }, "{n}: ({i}, {j})");
                }
            }
        }
        for (input, output) in [(4, 9), (9, 4), (5, 1), (1, 5), (37, 16)] {
            for row in weights(input, output).chunks(input) {
                let sum: f32 = row.iter().sum();
                assert!((sum - 1.0).abs() < 1e-6, "{input} → {output}: {sum}");
            }
        }
    }
}
