//! A copy that does not keep its destination in this core's caches.

use crate::error::KernelError;
use crate::params::check_len;

/// `dst = src`, written around this core's caches where the target has streaming stores
/// (x86_64: `movntps`, then `sfence`), as a plain copy elsewhere.
///
/// For handing a buffer to another thread that will read it while this one carries on:
/// the data goes to memory rather than into this core's cache, so the reader does not
/// fetch it from this core, and this core's next writes to `dst` do not wait for the
/// reader's core to give up its copies (two-thread training on far-apart vCPUs: 15%
/// faster; docs/log.md, "Measurements behind constants"; re-measure: `cnnkit train
/// --threads 2 --epochs 1`). Everything written is visible to another thread that
/// synchronises with this one afterwards (the trailing `sfence` orders the streaming
/// stores before any later store, such as a barrier's). An empty copy does nothing.
///
/// # Errors
/// [`KernelError::LengthMismatch`] if the lengths differ.
///
/// ```
/// let mut dst = [0.0; 5];
/// cnnkit_kernels::stream_copy(&[1.0, 2.0, 3.0, 4.0, 5.0], &mut dst).unwrap();
/// assert_eq!(dst, [1.0, 2.0, 3.0, 4.0, 5.0]);
/// ```
pub fn stream_copy(src: &[f32], dst: &mut [f32]) -> Result<(), KernelError> {
    check_len("dst", src.len(), dst.len())?;
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    {
        use core::arch::x86_64::{_mm_loadu_ps, _mm_sfence, _mm_stream_ps};
        // the head up to the first 16-byte boundary of `dst`, then whole aligned vectors
        let head = dst.as_ptr().align_offset(16).min(dst.len());
        let (dst_head, dst_body) = dst.split_at_mut(head);
        let (src_head, src_body) = src.split_at(head);
        dst_head.copy_from_slice(src_head);
        let vectors = dst_body.len() / 4;
        for i in 0..vectors {
            // SAFETY: `4 * i + 4 <= dst_body.len() == src_body.len()`, so both 4-float
            // accesses are in bounds; `dst_body` starts on a 16-byte boundary (the head
            // took everything before it), so `dst_body + 4i` is 16-byte aligned as
            // `_mm_stream_ps` requires; `_mm_loadu_ps` takes any alignment. SSE is part
            // of every x86_64 target.
            unsafe {
                let v = _mm_loadu_ps(src_body.as_ptr().add(4 * i));
                _mm_stream_ps(dst_body.as_mut_ptr().add(4 * i), v);
            }
        }
        dst_body[4 * vectors..].copy_from_slice(&src_body[4 * vectors..]);
        // SAFETY: `sfence` has no preconditions (SSE, part of every x86_64 target).
        unsafe { _mm_sfence() };
    }
    #[cfg(not(all(target_arch = "x86_64", not(miri))))]
    dst.copy_from_slice(src);
    Ok(())
}
