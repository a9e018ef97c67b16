//! The allocator, and what it can tell about the bytes each thread allocated.

// Bench builds (`--features alloc-stats`): jemalloc, which can tell how much each thread
// allocated, so Workers report what a configuration swap costs in memory.
#[cfg(feature = "alloc-stats")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Reads the calling thread's allocated-bytes counter, when the allocator keeps one.
pub fn thread_allocated() -> Option<fn() -> u64> {
    #[cfg(feature = "alloc-stats")]
    {
        fn read() -> u64 {
            tikv_jemalloc_ctl::thread::allocatedp::read()
                .map(|p| p.get())
                .unwrap_or(0)
        }
        Some(read)
    }
    #[cfg(not(feature = "alloc-stats"))]
    {
        None
    }
}
