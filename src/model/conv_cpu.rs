//! The CPU arithmetic behind [`super::conv`]: im2col, col2im and single-threaded GEMMs
//! (the `gemm` crate candle itself uses), run in parallel over chunks of images.
//!
//! Layout, as torch's CPU convolution: for a chunk of `nb` images, `X` = im2col is
//! `[C·k·k, nb·Ho·Wo]`, rows ordered (channel, kernel row, kernel column) like the weight
//! `[Cout, C/g·k·k]`, so group `g` owns a contiguous block of rows of both. Then
//!
//! * forward: `Y = W·X`, written straight into the `[N, Cout, Ho, Wo]` output when a chunk is
//!   one image;
//! * weight gradient: `dW += G·Xᵀ` with `G` the output gradient `[Cout, nb·Ho·Wo]`;
//! * input gradient: at stride 1, the forward of the conv with the kernel flipped on `G`
//!   ([`transposed`]); otherwise col2im(`Wᵀ·G`), reusing `X`'s buffer once `dW` has read it.
//!
//! Chunks hold one image unless the image's output is small (deep layers): then several
//! images share one GEMM so that its matrices stay large enough to run near peak. The
//! chunking and the order in which partial weight gradients are summed depend only on the
//! shapes, never on the thread count or on scheduling, so results are the same run to run.

use std::mem::MaybeUninit;

use candle_core::{Result, WithDType, bail};
use gemm::Parallelism;
use rayon::prelude::*;

/// Output columns (positions × images) a chunk aims for.
const CHUNK_COLUMNS: usize = 256;
/// At most this many partial weight gradients, each summed over consecutive chunks.
const PARTIALS: usize = 8;

/// Sizes of one conv with a square kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Geometry {
    /// Batch.
    pub n: usize,
    /// Input channels.
    pub c: usize,
    /// Input height and width.
    pub h: usize,
    pub w: usize,
    /// Output channels.
    pub cout: usize,
    /// Kernel side.
    pub k: usize,
    pub stride: usize,
    pub padding: usize,
    pub dilation: usize,
    pub groups: usize,
}

impl Geometry {
    /// Checks the sizes fit together (divisible groups, a non-empty output).
    pub fn check(&self) -> Result<()> {
        let g = self.groups;
        if g == 0 || !self.c.is_multiple_of(g) || !self.cout.is_multiple_of(g) {
            bail!(
                "conv2d: groups {g} must divide channels {} and {}",
                self.c,
                self.cout
            )
        }
        if self.stride == 0 || self.dilation == 0 || self.k == 0 {
            bail!("conv2d: kernel, stride and dilation must be positive: {self:?}")
        }
        let span = self.dilation * (self.k - 1) + 1;
        if self.h + 2 * self.padding < span || self.w + 2 * self.padding < span {
            bail!("conv2d: the kernel does not fit the padded input: {self:?}")
        }
        Ok(())
    }

    pub fn ho(&self) -> usize {
        (self.h + 2 * self.padding - self.dilation * (self.k - 1) - 1) / self.stride + 1
    }

    pub fn wo(&self) -> usize {
        (self.w + 2 * self.padding - self.dilation * (self.k - 1) - 1) / self.stride + 1
    }

    fn plane_out(&self) -> usize {
        self.ho() * self.wo()
    }

    fn image_in(&self) -> usize {
        self.c * self.h * self.w
    }

    fn image_out(&self) -> usize {
        self.cout * self.plane_out()
    }

    /// Rows of the im2col matrix: C·k·k.
    fn taps(&self) -> usize {
        self.c * self.k * self.k
    }

    /// Images per chunk.
    fn chunk(&self) -> usize {
        CHUNK_COLUMNS
            .div_ceil(self.plane_out())
            .clamp(1, self.n.max(1))
    }

    /// A 1×1 / stride 1 / padding 0 conv reads its input as the im2col matrix itself.
    fn is_pointwise(&self) -> bool {
        self.k == 1 && self.stride == 1 && self.padding == 0
    }

    /// For kernel offset `t` along an axis of input length `len` and output length `out`:
    /// the output range whose input index `o·s + t·d − p` lies inside, and that index at its
    /// start.
    fn valid(&self, t: usize, len: usize, out: usize) -> (usize, usize) {
        let (s, off) = (self.stride, t * self.dilation);
        // o·s + off ≥ p  and  o·s + off < len + p.
        let lo = self.padding.saturating_sub(off).div_ceil(s).min(out);
        let hi = (len + self.padding)
            .saturating_sub(off)
            .div_ceil(s)
            .min(out);
        (lo, hi.max(lo))
    }
}

/// One row of the im2col matrix: an input channel and a kernel offset, with the output rows
/// `r0..r1` and columns `c0..c1` whose input pixel lies inside the image (the rest read
/// padding).
struct Tap {
    c: usize,
    ki: usize,
    kj: usize,
    r0: usize,
    r1: usize,
    c0: usize,
    c1: usize,
}

impl Geometry {
    fn tap(&self, row: usize) -> Tap {
        let k = self.k;
        let (c, ki, kj) = (row / (k * k), row / k % k, row % k);
        let (c0, c1) = self.valid(kj, self.w, self.wo());
        // A tap that reads only padding columns reads nothing in any row.
        let (r0, r1) = if c0 < c1 {
            self.valid(ki, self.h, self.ho())
        } else {
            (0, 0)
        };
        Tap {
            c,
            ki,
            kj,
            r0,
            r1,
            c0,
            c1,
        }
    }
}

impl Tap {
    /// The input row that output row `oi` reads.
    fn input_row(&self, g: &Geometry, oi: usize) -> usize {
        oi * g.stride + self.ki * g.dilation - g.padding
    }

    /// The input column that output column `c0` reads.
    fn first_input_col(&self, g: &Geometry) -> usize {
        self.c0 * g.stride + self.kj * g.dilation - g.padding
    }
}

/// A strided matrix view for [`gemm_into`]: element (i, j) at `i·rs + j·cs`.
#[derive(Clone, Copy)]
struct View {
    rs: usize,
    cs: usize,
}

/// Where a GEMM writes: initialised values (which it may accumulate into), or memory not
/// yet initialised, which a GEMM that does not accumulate fills without reading: the conv's
/// output is written exactly once, so zero-filling it first would be a wasted pass.
trait Dst<T> {
    /// Whether the elements hold values (so they may be read).
    const INIT: bool;
    fn raw(&mut self) -> (*mut T, usize);
}

impl<T> Dst<T> for [T] {
    const INIT: bool = true;
    fn raw(&mut self) -> (*mut T, usize) {
        (self.as_mut_ptr(), self.len())
    }
}

impl<T> Dst<T> for [MaybeUninit<T>] {
    const INIT: bool = false;
    fn raw(&mut self) -> (*mut T, usize) {
        (self.as_mut_ptr().cast(), self.len())
    }
}

/// `dst (+)= lhs[m×k] · rhs[k×n]`, single-threaded (the callers parallelise over chunks).
#[allow(clippy::too_many_arguments)]
fn gemm_into<T: WithDType, D: Dst<T> + ?Sized>(
    (m, n, k): (usize, usize, usize),
    dst: &mut D,
    dv: View,
    accumulate: bool,
    lhs: &[T],
    lv: View,
    rhs: &[T],
    rv: View,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        D::INIT || !accumulate,
        "gemm: cannot accumulate into uninitialised memory"
    );
    let (dst, dst_len) = dst.raw();
    let last = |v: View, r: usize, c: usize| (r - 1) * v.rs + (c - 1) * v.cs;
    // The bounds gemm's raw pointers rely on.
    assert!(last(dv, m, n) < dst_len, "gemm: destination too short");
    if k > 0 {
        assert!(last(lv, m, k) < lhs.len(), "gemm: lhs too short");
        assert!(last(rv, k, n) < rhs.len(), "gemm: rhs too short");
    }
    // SAFETY: every element gemm touches lies inside the slices (checked above); `dst` does
    // not alias `lhs` or `rhs` (a `&mut` and two `&`); uninitialised memory is only written
    // (asserted above: no accumulation).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            dv.cs as isize,
            dv.rs as isize,
            accumulate,
            lhs.as_ptr(),
            lv.cs as isize,
            lv.rs as isize,
            rhs.as_ptr(),
            rv.cs as isize,
            rv.rs as isize,
            T::one(),
            T::one(),
            false,
            false,
            false,
            Parallelism::None,
        );
    }
}

/// Fills `cols` (`[C·k·k, nb·Ho·Wo]`) from the `nb` images in `x`.
fn im2col<T: WithDType>(x: &[T], g: &Geometry, cols: &mut [T]) {
    let wo = g.wo();
    let nb = x.len() / g.image_in();
    let width = nb * g.plane_out();
    for (row, out) in cols.chunks_mut(width).enumerate().take(g.taps()) {
        let t = g.tap(row);
        let (c0, c1) = (t.c0, t.c1);
        for (b, out) in out.chunks_mut(g.plane_out()).enumerate() {
            let plane = &x[(b * g.c + t.c) * g.h * g.w..][..g.h * g.w];
            out[..t.r0 * wo].fill(T::zero());
            out[t.r1 * wo..].fill(T::zero());
            for oi in t.r0..t.r1 {
                let i = t.input_row(g, oi);
                let src = &plane[i * g.w..(i + 1) * g.w];
                let dst = &mut out[oi * wo..(oi + 1) * wo];
                dst[..c0].fill(T::zero());
                dst[c1..].fill(T::zero());
                let j0 = t.first_input_col(g);
                if g.stride == 1 {
                    dst[c0..c1].copy_from_slice(&src[j0..j0 + (c1 - c0)]);
                } else {
                    // Indexed: `step_by` compiles to a call per element here.
                    let src = &src[j0..];
                    for (t, d) in dst[c0..c1].iter_mut().enumerate() {
                        *d = src[t * g.stride];
                    }
                }
            }
        }
    }
}

/// Adds every column of `cols` (`[C·k·k, nb·Ho·Wo]`) back onto its input pixel of the `nb`
/// images in `x`.
fn col2im<T: WithDType>(cols: &[T], g: &Geometry, x: &mut [T]) {
    let wo = g.wo();
    let nb = x.len() / g.image_in();
    let width = nb * g.plane_out();
    for (row, src) in cols.chunks(width).enumerate().take(g.taps()) {
        let t = g.tap(row);
        let j0 = t.first_input_col(g);
        for (b, src) in src.chunks(g.plane_out()).enumerate() {
            let plane = &mut x[(b * g.c + t.c) * g.h * g.w..][..g.h * g.w];
            for oi in t.r0..t.r1 {
                let i = t.input_row(g, oi);
                let dst = &mut plane[i * g.w + j0..(i + 1) * g.w];
                let src = &src[oi * wo + t.c0..oi * wo + t.c1];
                if g.stride == 1 {
                    // Contiguous on both sides, so this vectorises (`step_by` does not).
                    for (d, s) in dst[..src.len()].iter_mut().zip(src) {
                        *d += *s;
                    }
                } else {
                    // Indexed, as in im2col.
                    for (t, s) in src.iter().enumerate() {
                        dst[t * g.stride] += *s;
                    }
                }
            }
        }
    }
}

/// Copies the `nb` images' `[Cout, Ho·Wo]` planes of `nchw` side by side into `wide`
/// (`[Cout, nb·Ho·Wo]`).
fn gather<T: WithDType>(nchw: &[T], wide: &mut [T], g: &Geometry) {
    let p = g.plane_out();
    let nb = nchw.len() / g.image_out();
    for co in 0..g.cout {
        for b in 0..nb {
            wide[(co * nb + b) * p..][..p].copy_from_slice(&nchw[(b * g.cout + co) * p..][..p]);
        }
    }
}

/// The inverse of [`gather`], into memory not yet initialised (every element is written).
fn scatter<T: WithDType>(wide: &[T], nchw: &mut [MaybeUninit<T>], g: &Geometry) {
    let p = g.plane_out();
    let nb = nchw.len() / g.image_out();
    for co in 0..g.cout {
        for b in 0..nb {
            let src = &wide[(co * nb + b) * p..][..p];
            for (d, s) in nchw[(b * g.cout + co) * p..][..p].iter_mut().zip(src) {
                d.write(*s);
            }
        }
    }
}

/// The im2col matrix of the images in `x` (`nb` of them): `x` itself for a pointwise conv of
/// one image, else `buf` filled.
fn columns<'a, T: WithDType>(x: &'a [T], g: &Geometry, buf: &'a mut Vec<T>) -> &'a [T] {
    let nb = x.len() / g.image_in();
    if g.is_pointwise() && nb == 1 {
        return x;
    }
    buf.resize(g.taps() * nb * g.plane_out(), T::zero());
    im2col(x, g, buf);
    buf
}

/// `out` (`[Cout, width]`) = `W·X` group by group, for im2col columns `cols` of `width`.
fn products<T: WithDType, E>(out: &mut [E], w: &[T], cols: &[T], g: &Geometry, width: usize)
where
    [E]: Dst<T>,
{
    let (cg, og) = (g.taps() / g.groups, g.cout / g.groups);
    for grp in 0..g.groups {
        gemm_into(
            (og, width, cg),
            &mut out[grp * og * width..],
            View { rs: width, cs: 1 },
            false,
            &w[grp * og * cg..],
            View { rs: cg, cs: 1 },
            &cols[grp * cg * width..],
            View { rs: width, cs: 1 },
        );
    }
}

/// `x` `[N, C, H, W]` ⊛ `w` `[Cout, C/g, k, k]` → `[N, Cout, Ho, Wo]` (all contiguous).
pub(super) fn forward<T: WithDType>(x: &[T], w: &[T], g: &Geometry) -> Vec<T> {
    let mut y = Box::<[T]>::new_uninit_slice(g.n * g.image_out());
    forward_into(x, w, g, &mut y);
    // SAFETY: `forward_into` writes every element.
    unsafe { y.assume_init() }.into_vec()
}

/// [`forward`] into `y` (`g.n · Cout·Ho·Wo` elements), every element written once.
fn forward_into<T: WithDType>(x: &[T], w: &[T], g: &Geometry, y: &mut [MaybeUninit<T>]) {
    let nb = g.chunk();
    y.par_chunks_mut(nb * g.image_out())
        .zip(x.par_chunks(nb * g.image_in()))
        .for_each_init(
            || (Vec::new(), Vec::new()),
            |(buf, wide), (y, x)| {
                let nb = x.len() / g.image_in();
                let cols = columns(x, g, buf);
                let width = nb * g.plane_out();
                if nb == 1 {
                    // The groups' rows cover the image's output: every element written once.
                    products(y, w, cols, g, width);
                } else {
                    wide.resize(g.cout * width, T::zero());
                    products(&mut wide[..], w, cols, g, width);
                    scatter(wide, y, g);
                }
            },
        );
}

/// For a stride-1 conv whose padding is at most its kernel's span − 1: the weights and
/// geometry of the conv that maps the output gradient to the input gradient. That is the
/// same conv with the kernel flipped, input and output channels swapped (within each group)
/// and padding `d·(k−1) − p`, so the input gradient comes out of one GEMM per image with
/// `Cout·k·k` as its inner dimension, written once, instead of a GEMM with `Cout` as its
/// inner dimension followed by col2im's scattered additions into a zeroed buffer.
fn transposed<T: WithDType>(w: &[T], g: &Geometry) -> Option<(Vec<T>, Geometry)> {
    let span = g.dilation * (g.k - 1);
    if g.stride != 1 || g.padding > span {
        return None;
    }
    let (cg, og, kk) = (g.c / g.groups, g.cout / g.groups, g.k * g.k);
    let mut wt = vec![T::zero(); w.len()];
    for grp in 0..g.groups {
        for o in 0..og {
            for c in 0..cg {
                let src = &w[((grp * og + o) * cg + c) * kk..][..kk];
                let dst = &mut wt[((grp * cg + c) * og + o) * kk..][..kk];
                for (d, s) in dst.iter_mut().zip(src.iter().rev()) {
                    *d = *s;
                }
            }
        }
    }
    let gt = Geometry {
        n: g.n,
        c: g.cout,
        h: g.ho(),
        w: g.wo(),
        cout: g.c,
        k: g.k,
        stride: 1,
        padding: span - g.padding,
        dilation: g.dilation,
        groups: g.groups,
    };
    // Always true for these sizes; checked because the caller's output relies on it.
    ((gt.ho(), gt.wo()) == (g.h, g.w)).then_some((wt, gt))
}

/// Gradients of the conv for output gradient `dy` (`[N, Cout, Ho, Wo]`), flat: the input's
/// (when `input_grad`), the weight's, then `tail` (so that a fused op's other gradients share
/// the one output buffer a custom op has).
pub(super) fn backward<T: WithDType>(
    x: &[T],
    w: &[T],
    dy: &[T],
    g: &Geometry,
    input_grad: bool,
    tail: &[T],
) -> Vec<T> {
    let nb = g.chunk();
    let chunks = g.n.div_ceil(nb);
    let per = chunks.div_ceil(PARTIALS.min(chunks).max(1));
    let images = per * nb;
    let (cg, og) = (g.taps() / g.groups, g.cout / g.groups);
    let nx = if input_grad { g.n * g.image_in() } else { 0 };
    // Not zero-filled here, on one thread: each part zeroes its own input gradient (which
    // col2im then accumulates into) and the partial sums write the weight gradient.
    let mut out = Box::<[T]>::new_uninit_slice(nx + w.len() + tail.len());
    let (dx, rest) = out.split_at_mut(nx);
    let (dw_out, tail_out) = rest.split_at_mut(w.len());
    for (o, v) in tail_out.iter_mut().zip(tail) {
        o.write(*v);
    }
    let flipped = if input_grad { transposed(w, g) } else { None };
    if let Some((wt, gt)) = &flipped {
        // Writes all of `dx`: the flipped conv's output has the input's size.
        forward_into(dy, wt, gt, dx);
    }
    // Otherwise the input gradient is col2im's, accumulated chunk by chunk below.
    let col2im_grad = input_grad && flipped.is_none();
    let mut dx_parts: Vec<&mut [MaybeUninit<T>]> = if col2im_grad {
        dx.chunks_mut(images * g.image_in()).collect()
    } else {
        Vec::new()
    };
    let parts = g.n.div_ceil(images);
    dx_parts.resize_with(parts, || &mut []);
    let partials: Vec<Vec<T>> = dx_parts
        .into_par_iter()
        .enumerate()
        .map(|(part, dx)| {
            let dx = zeroed(dx);
            let mut dw = vec![T::zero(); w.len()];
            let (mut buf, mut wide) = (Vec::new(), Vec::new());
            let first = part * images;
            let last = (first + images).min(g.n);
            for b0 in (first..last).step_by(nb) {
                let b1 = (b0 + nb).min(last);
                let x = &x[b0 * g.image_in()..b1 * g.image_in()];
                let dy = &dy[b0 * g.image_out()..b1 * g.image_out()];
                let width = (b1 - b0) * g.plane_out();
                let grad: &[T] = if b1 - b0 == 1 {
                    dy
                } else {
                    wide.resize(g.cout * width, T::zero());
                    gather(dy, &mut wide, g);
                    &wide
                };
                let cols = columns(x, g, &mut buf);
                for grp in 0..g.groups {
                    gemm_into(
                        (og, cg, width),
                        &mut dw[grp * og * cg..],
                        View { rs: cg, cs: 1 },
                        true,
                        &grad[grp * og * width..],
                        View { rs: width, cs: 1 },
                        &cols[grp * cg * width..],
                        View { rs: 1, cs: width },
                    );
                }
                if !col2im_grad {
                    continue;
                }
                buf.resize(g.taps() * width, T::zero());
                for grp in 0..g.groups {
                    gemm_into(
                        (cg, width, og),
                        &mut buf[grp * cg * width..],
                        View { rs: width, cs: 1 },
                        false,
                        &w[grp * og * cg..],
                        View { rs: 1, cs: cg },
                        &grad[grp * og * width..],
                        View { rs: width, cs: 1 },
                    );
                }
                let dx = &mut dx[(b0 - first) * g.image_in()..(b1 - first) * g.image_in()];
                col2im(&buf, g, dx);
            }
            dw
        })
        .collect();
    // Summed in part order, whichever thread finished first.
    dw_out
        .par_chunks_mut(1 << 14)
        .enumerate()
        .for_each(|(i, dw)| {
            let dw = zeroed(dw);
            for p in &partials {
                for (d, v) in dw.iter_mut().zip(&p[i << 14..]) {
                    *d += *v;
                }
            }
        });
    // SAFETY: every element of `dx` was written by `forward_into` or zeroed by its part (the
    // parts cover it), every
    // element of `dw_out` written just above and `tail_out` at the start.
    unsafe { out.assume_init() }.into_vec()
}

/// `s` filled with zeros, as initialised memory.
fn zeroed<T: WithDType>(s: &mut [MaybeUninit<T>]) -> &mut [T] {
    for v in s.iter_mut() {
        v.write(T::zero());
    }
    // SAFETY: every element was just written.
    unsafe { std::slice::from_raw_parts_mut(s.as_mut_ptr().cast::<T>(), s.len()) }
}
