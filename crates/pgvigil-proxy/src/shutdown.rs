//! How pgvigil stops, in PgBouncer's (1.23+) terms:
//!
//! - `Smart` (SIGTERM): stop accepting, report not ready, let clients
//!   finish and leave on their own, up to `shutdown_timeout`.
//! - `Safe` (SIGINT, the console's SHUTDOWN): the same, and a
//!   transaction-mode client that asks
//!   for a server again is told 57P01 instead; once no server connection
//!   is checked out, everyone left is disconnected.
//! - `Immediate` (SIGQUIT, a second SIGTERM or SIGINT): disconnect
//!   everyone now.
//!
//! Whoever is still connected when the time is up is told PostgreSQL's
//! own "terminating connection due to administrator command" (57P01).
//! Signals are process-wide, so the phase is too: sessions read it with
//! one relaxed load where they need it (asking for a server), never per
//! message.

use std::sync::atomic::{AtomicU8, Ordering};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    Smart,
    Safe,
    Immediate,
}

const RUNNING: u8 = 0;
const SMART: u8 = 1;
const SAFE: u8 = 2;
const CUTTING: u8 = 3;

static PHASE: AtomicU8 = AtomicU8::new(RUNNING);

/// Whether pgvigil is shutting down (`/readyz` answers 503).
pub fn draining() -> bool {
    PHASE.load(Ordering::Relaxed) != RUNNING
}

/// A transaction-mode client may not start another transaction.
pub(crate) fn refusing_new_transactions() -> bool {
    PHASE.load(Ordering::Relaxed) >= SAFE
}

/// Sessions still running are being ended: tell their clients why.
pub(crate) fn cutting() -> bool {
    PHASE.load(Ordering::Relaxed) == CUTTING
}

pub(crate) fn begin(mode: Shutdown) {
    let phase = match mode {
        Shutdown::Smart => SMART,
        Shutdown::Safe => SAFE,
        Shutdown::Immediate => CUTTING,
    };
    PHASE.fetch_max(phase, Ordering::Relaxed);
}

pub(crate) fn cut() {
    PHASE.store(CUTTING, Ordering::Relaxed);
}

/// What a client is told when shutdown ends its session.
pub(crate) const ADMIN_TERMINATION: &str = "terminating connection due to administrator command";
