//! The one place where the CPU kernels' custom ops go from candle's untyped storage to typed
//! slices and back.
//!
//! candle hands a custom op `CpuStorage` (an enum over dtypes) and a `Layout` per input. The
//! kernels are generic over the element type; each op implements [`Kernel`] once, generically,
//! and [`dispatch`] picks the type: one `match` here instead of an f32 and an f64 arm per op.
//! Generic all the way down, so each kernel is compiled once per type, and the slices borrow
//! the storage (nothing is copied).

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, Layout, Result, WithDType, bail};

/// The element types the fast kernels run on: f32 and f64 (candle's half types and integers
/// go to candle's own ops before they reach a kernel).
pub(super) trait Float: WithDType {
    const NEG_INFINITY: Self;
    fn is_nan(self) -> bool;
}

impl Float for f32 {
    const NEG_INFINITY: Self = f32::NEG_INFINITY;
    fn is_nan(self) -> bool {
        f32::is_nan(self)
    }
}

impl Float for f64 {
    const NEG_INFINITY: Self = f64::NEG_INFINITY;
    fn is_nan(self) -> bool {
        f64::is_nan(self)
    }
}

/// A CPU kernel of `N` inputs of one element type.
pub(super) trait Kernel<const N: usize> {
    /// What the op works out from the layouts before the dispatch (a conv's geometry, a
    /// plane's size, ..).
    type Args;
    /// The result: usually the output's storage (`T::to_cpu_storage_owned`), but anything
    /// that does not depend on `T` (per-channel statistics in f64, ..).
    type Output;

    fn run<T: Float>(&self, inputs: [&[T]; N], args: &Self::Args) -> Result<Self::Output>;
}

/// Runs `kernel` on `inputs` as f32 or f64 slices. Errors, naming `op`, unless all inputs
/// have the same one of those dtypes and are contiguous (callers make them so).
pub(super) fn dispatch<K: Kernel<N>, const N: usize>(
    op: &str,
    kernel: &K,
    inputs: [(&CpuStorage, &Layout); N],
    args: &K::Args,
) -> Result<K::Output> {
    match inputs.first().map(|(s, _)| s) {
        Some(CpuStorage::F32(_)) => kernel.run(slices::<f32, N>(op, inputs)?, args),
        Some(CpuStorage::F64(_)) => kernel.run(slices::<f64, N>(op, inputs)?, args),
        _ => bail!("{}", unsupported(op, inputs)),
    }
}

/// The contiguous part of each input that its layout covers, as `T`.
fn slices<'a, T: Float, const N: usize>(
    op: &str,
    inputs: [(&'a CpuStorage, &Layout); N],
) -> Result<[&'a [T]; N]> {
    let mut out: [&[T]; N] = [&[]; N];
    for (i, (o, (s, l))) in out.iter_mut().zip(inputs).enumerate() {
        let Ok(v) = T::cpu_storage_as_slice(s) else {
            bail!("{}", unsupported(op, inputs))
        };
        let Some((a, b)) = l.contiguous_offsets() else {
            bail!(
                "{op}: expected contiguous tensors, input {} of {N} is not",
                i + 1
            )
        };
        *o = &v[a..b];
    }
    Ok(out)
}

/// The error for inputs the kernels do not take, with all their dtypes, as in
/// `conv2d: unsupported dtypes F32, F16`.
fn unsupported<const N: usize>(op: &str, inputs: [(&CpuStorage, &Layout); N]) -> String {
    let dtypes: Vec<String> = inputs
        .iter()
        .map(|(s, _)| format!("{:?}", s.dtype()))
        .collect();
    let plural = if N == 1 { "" } else { "s" };
    format!("{op}: unsupported dtype{plural} {}", dtypes.join(", "))
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Tensor};

    use super::*;

    /// Sums its inputs elementwise.
    struct Sum;

    impl Kernel<2> for Sum {
        type Args = ();
        type Output = CpuStorage;

        fn run<T: Float>(&self, [a, b]: [&[T]; 2], _: &()) -> Result<CpuStorage> {
            Ok(T::to_cpu_storage_owned(
                a.iter().zip(b).map(|(a, b)| *a + *b).collect(),
            ))
        }
    }

    fn sum(a: &Tensor, b: &Tensor) -> Result<CpuStorage> {
        let (sa, la) = a.storage_and_layout();
        let (sb, lb) = b.storage_and_layout();
        match (&*sa, &*sb) {
            (candle_core::Storage::Cpu(sa), candle_core::Storage::Cpu(sb)) => {
                dispatch("sum", &Sum, [(sa, la), (sb, lb)], &())
            }
            _ => unreachable!("CPU tensors"),
        }
    }

    #[test]
    fn runs_on_the_layouts_part_of_f32_and_f64_inputs() -> Result<()> {
        let a = Tensor::arange(0f32, 6., &Device::Cpu)?.narrow(0, 2, 3)?;
        let b = Tensor::new(&[10f32, 20., 30.], &Device::Cpu)?;
        assert_eq!(
            sum(&a, &b)?.as_slice::<f32>()?,
            [12., 23., 34.],
            "offset layouts are honoured"
        );
        let (a, b) = (a.to_dtype(DType::F64)?, b.to_dtype(DType::F64)?);
        assert_eq!(sum(&a, &b)?.as_slice::<f64>()?, [12., 23., 34.]);
        Ok(())
    }

    #[test]
    fn other_or_mixed_dtypes_and_strided_inputs_are_errors_naming_the_op() -> Result<()> {
        let a = Tensor::new(&[1f32, 2.], &Device::Cpu)?;
        let err = |r: Result<CpuStorage>| r.expect_err("an error").to_string();
        let msg = err(sum(&a, &a.to_dtype(DType::F64)?));
        assert!(msg.contains("sum: unsupported dtypes F32, F64"), "{msg}");
        let msg = err(sum(&a.to_dtype(DType::BF16)?, &a));
        assert!(msg.contains("sum: unsupported dtypes BF16, F32"), "{msg}");
        let m = Tensor::new(&[[1f32, 2.], [3., 4.]], &Device::Cpu)?;
        let msg = err(sum(&m, &m.t()?));
        assert!(
            msg.contains("sum: expected contiguous tensors, input 2 of 2"),
            "{msg}"
        );
        Ok(())
    }
}
