//! The normalization caches of a runtime thread, shared by its sessions.

use std::cell::RefCell;
use std::collections::HashSet;

use pgvigil_sql::{FastHash, NormalizeCache, ShapeCache};

/// Distinct SQL texts each thread keeps normalized, for all its sessions:
/// each entry holds the text and its normalized form (~400 bytes). Texts
/// with inline literals are all distinct and are not kept (the shape
/// cache answers them).
const THREAD_TEXTS: usize = 2048;
/// Fingerprints each thread remembers having registered with insight.
pub(super) const THREAD_REGISTERED: usize = 16384;
/// Statement shapes (texts that differ only in literal values) each
/// thread keeps normalized, for all its sessions: about 1 KiB each.
const THREAD_SHAPES: usize = 512;

/// The normalization caches of one runtime thread.
pub(super) struct ThreadNormalizer {
    /// Texts seen before, by any session of the thread: a thousand
    /// sessions running the same ORM statements share one entry each,
    /// which stays warm in the CPU's caches, where a cache per session
    /// held a copy per session.
    pub(super) texts: NormalizeCache,
    /// An app that inlines values sends a new text per query, and
    /// normalizing it from its shape costs a lex and a compare instead of
    /// a full pass.
    pub(super) shapes: ShapeCache,
    /// Fingerprints whose text insight already has: registering costs a
    /// lookup in a shared map and a copy of the text. One set for the
    /// thread's sessions, so it stays warm where a set per session went
    /// cold between two of its statements (and took up to 64 KiB each).
    pub(super) registered: HashSet<u64, FastHash>,
    /// The insight instance (`Insight::id`) `registered` is about.
    pub(super) registered_with: u64,
    /// Constants hashes of the latest text answered by a shape's example
    /// (`NormalizeCache::get_or_normalize_example`), kept for its buffer.
    pub(super) hashes: Vec<u64>,
}

thread_local! {
    /// Shared by the sessions of a runtime thread, so no lock.
    pub(super) static NORMALIZER: RefCell<ThreadNormalizer> = RefCell::new(ThreadNormalizer {
        texts: NormalizeCache::new(THREAD_TEXTS),
        shapes: ShapeCache::new(THREAD_SHAPES).without_constant_places(),
        registered: HashSet::default(),
        registered_with: 0,
        hashes: Vec::new(),
    });
}
