//! What insight keeps and what it calls slow or a loop.

use crate::{NPlusOneConfig, SlowRules};

#[derive(Debug, Clone)]
pub struct InsightConfig {
    pub max_fingerprints: usize,
    pub slow_rules: SlowRules,
    pub max_slow_events: usize,
    pub n_plus_one: NPlusOneConfig,
    pub max_detections: usize,
    pub log_parameters: bool,
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
        }
    }
}
