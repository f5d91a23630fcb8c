//! Keeps freed activation buffers in the process instead of handing them back to the OS.
//!
//! A CPU training step allocates and frees hundreds of tensors of up to tens of MB (every
//! activation, its gradient, candle's zero-filled gradient accumulators). glibc serves such
//! sizes with fresh `mmap`s or trims them off the heap on `free`, so every step page-faults
//! its working set back in, zero-filling each page: a fifth of a ResNet-18 step's time in
//! `perf`. Raising the mmap and trim thresholds lets the heap keep and reuse that memory;
//! the cost is that a training process keeps its peak heap until it exits.

/// Tunes glibc's allocator for training (see the module docs). Idempotent; a no-op on other
/// platforms and C libraries.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // glibc caps the mmap threshold at 32 MiB on 64-bit targets (larger values are refused).
        const MMAP_THRESHOLD: libc::c_int = 32 << 20;
        const TRIM_THRESHOLD: libc::c_int = 1 << 30;
        // SAFETY: mallopt only changes allocator parameters; it is safe to call at any time,
        // from any thread.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
        }
    }
}
