//! A hint that brings memory into the CPU's cache before it is read: lookups into tables
//! larger than the cache ask for the rows ahead of the one they serve.

/// Asks the CPU to bring `value`'s memory into its cache. A table of a million entries or
/// groups is cold: a lookup that asks ahead overlaps its misses with those of other rows.
pub fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let at = (value as *const T).cast::<i8>();
        // Every cache line the value spans, from the one it starts in.
        let skew = at as usize % 64;
        let first = at.wrapping_sub(skew);
        for line in (0..skew + std::mem::size_of::<T>()).step_by(64) {
            // SAFETY: prefetching is a hint that never faults, and SSE is part of x86-64.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(first.wrapping_add(line)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}
