//! What insight keeps and what it calls slow or a loop.

use crate::{MarkerConfig, NPlusOneConfig, SlowRules};

#[derive(Debug, Clone)]
pub struct InsightConfig {
    pub max_fingerprints: usize,
    pub slow_rules: SlowRules,
    pub max_slow_events: usize,
    pub n_plus_one: NPlusOneConfig,
    pub max_detections: usize,
    pub log_parameters: bool,
    /// Keep one real parameter sample of each statement that matters
    /// (`watch_slow_us`), for the advisor's plans. Memory only.
    pub capture_parameters: bool,
    /// An execution this long makes its fingerprint matter: watchers
    /// hear `Crossing::SlowExecution` once.
    pub watch_slow_us: u64,
    /// Total time that makes a fingerprint matter (`Crossing::TotalTime`).
    pub watch_total_us: u64,
    /// Unix milliseconds now: read for events (slow queries, N+1
    /// findings), never per statement. Tests pass their own.
    pub wall_clock_ms: fn() -> u64,
    /// Before/after markers, regressions (markers.rs, regression.rs).
    pub markers: MarkerConfig,
}

impl Default for InsightConfig {
    fn default() -> Self {
        InsightConfig {
            max_fingerprints: 5000,
            slow_rules: SlowRules::new(Vec::new(), 500_000),
            max_slow_events: 1000,
            n_plus_one: NPlusOneConfig::default(),
            max_detections: 1000,
            log_parameters: false,
            capture_parameters: false,
            watch_slow_us: u64::MAX,
            watch_total_us: u64::MAX,
            wall_clock_ms: crate::time::unix_ms_now,
            markers: MarkerConfig::default(),
        }
    }
}
