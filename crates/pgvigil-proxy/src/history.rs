//! Markers, regressions and the history file, wired from `[advisor]`:
//! the settings mapped into insight, the file loaded at start, saved
//! every few minutes and at shutdown.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use pgvigil_config::AdvisorSettings;
use pgvigil_insight::{Insight, MarkerConfig};

use crate::analysis::now_ms;

/// How often the history file is rewritten: a crash loses at most this
/// much of the baseline, and the write (a few MiB at worst) stays rare.
pub(crate) const HISTORY_SAVE_INTERVAL: Duration = Duration::from_secs(180);

pub(crate) fn marker_config(a: &AdvisorSettings) -> MarkerConfig {
    MarkerConfig {
        max_markers: a.max_markers,
        regression_factor: a.regression_factor,
        regression_window_ms: a.regression_window.as_millis() as u64,
        regression_min_calls: a.regression_min_calls,
    }
}

/// Restores the history file, if one is configured; a file that cannot
/// be used is reported and left for the next save to replace.
pub(crate) fn load(insight: &Insight, a: &AdvisorSettings) {
    let Some(path) = &a.history_file else {
        return;
    };
    match insight.load_history(path, now_ms()) {
        Ok(loaded) => tracing::info!(
            "history restored from {}: {} fingerprints, {} markers",
            path.display(),
            loaded.fingerprints,
            loaded.markers
        ),
        Err(e) => tracing::warn!("history not restored, starting afresh: {e}"),
    }
}

async fn save(insight: Arc<Insight>, path: PathBuf) {
    let result =
        tokio::task::spawn_blocking(move || insight.save_history(Path::new(&path), now_ms())).await;
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!("history not saved: {e}"),
        Err(e) => tracing::warn!("history not saved: {e}"),
    }
}

pub(crate) async fn save_periodically(insight: Arc<Insight>, path: PathBuf) {
    let mut tick = tokio::time::interval(HISTORY_SAVE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate: nothing new yet
    loop {
        tick.tick().await;
        save(insight.clone(), path.clone()).await;
    }
}

/// The last save, on a graceful shutdown.
pub(crate) async fn save_at_shutdown(insight: Option<Arc<Insight>>, a: &AdvisorSettings) {
    if let (Some(insight), Some(path)) = (insight, a.history_file.clone()) {
        save(insight, path).await;
    }
}
