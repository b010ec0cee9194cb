//! History saved to a file (`advisor.history_file`), so that a restart
//! keeps the day of slices regression baselines compare against, and the
//! markers with their figures.
//!
//! The file holds normalized texts and figures only, never a parameter.
//! It is written whole to a temporary file next to it and renamed over
//! it, so a crash mid-write leaves the previous file intact.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::histogram::LatencyHistogram;
use crate::insight::lock;
use crate::markers::{Figures, Followed, Marker, StoredMarker};
use crate::stats::{QueryStats, Slice, Totals};
use crate::store::Entry;
use crate::{Insight, StatementInfo};

/// Bumped whenever the file's layout changes; a file of another version
/// is ignored (with a warning from the caller), not misread.
pub const HISTORY_FORMAT_VERSION: u32 = 1;
const FORMAT: &str = "pgvigil-history";

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("cannot read or write history file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a usable pgvigil history file: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error("{path} has history format version {found}; this pgvigil reads version {expected}")]
    Version {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
}

/// What a load restored.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LoadedHistory {
    pub fingerprints: usize,
    pub markers: usize,
}

#[derive(Deserialize)]
struct Head {
    format: String,
    version: u32,
}

#[derive(Serialize, Deserialize)]
struct HistoryFile {
    format: String,
    version: u32,
    saved_at_ms: u64,
    fingerprints: Vec<FingerprintRecord>,
    markers: Vec<MarkerRecord>,
    next_marker_id: u64,
    versions: Vec<(String, Vec<String>)>,
}

#[derive(Serialize, Deserialize)]
struct FingerprintRecord {
    fingerprint: u64,
    query: String,
    kind: String,
    first_seen_ms: u64,
    last_seen_ms: u64,
    slices: Vec<SliceRecord>,
}

#[derive(Serialize, Deserialize)]
struct SliceRecord {
    minute: u64,
    span: u64,
    totals: Totals,
    bits: u8,
    first: u32,
    counts: Vec<u32>,
}

#[derive(Serialize, Deserialize)]
struct MarkerRecord {
    marker: Marker,
    followed: Vec<FollowedRecord>,
}

#[derive(Serialize, Deserialize)]
struct FollowedRecord {
    fingerprint: u64,
    query: String,
    kind: String,
    related: bool,
    before: Figures,
    /// As of the save: a restart starts cumulative figures afresh, so
    /// "after" cannot be followed further.
    after: Figures,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> HistoryError + '_ {
    move |source| HistoryError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Insight {
    /// Writes the hourly history and the markers to `path` (temporary
    /// file and rename). Blocking file I/O: call it off the async
    /// runtime's workers.
    pub fn save_history(&self, path: &Path, now_ms: u64) -> Result<(), HistoryError> {
        self.flush_buffers(now_ms);
        let fingerprints: Vec<FingerprintRecord> = {
            let store = lock(&self.store);
            store
                .entries
                .values()
                .filter_map(|e| Some((e, e.stats.slices())).filter(|(_, s)| !s.is_empty()))
                .map(|(e, slices)| FingerprintRecord {
                    fingerprint: e.info.fingerprint,
                    query: e.info.query.clone(),
                    kind: e.info.kind.to_string(),
                    first_seen_ms: e.stats.first_seen_ms,
                    last_seen_ms: e.stats.last_seen_ms,
                    slices: slices
                        .iter()
                        .map(|s| {
                            let (bits, first, counts) = s.histogram.parts();
                            SliceRecord {
                                minute: s.minute,
                                span: s.span,
                                totals: s.totals,
                                bits,
                                first,
                                counts: counts.to_vec(),
                            }
                        })
                        .collect(),
                })
                .collect()
        };
        let (stored, next_marker_id, versions) = {
            let book = lock(&self.marks.book);
            let versions: Vec<(String, Vec<String>)> = book
                .versions
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            (book.markers.clone(), book.next_id, versions)
        };
        let markers = stored
            .iter()
            .map(|m| MarkerRecord {
                marker: m.marker.clone(),
                followed: m
                    .followed
                    .iter()
                    .zip(self.comparisons(m))
                    .map(|(f, c)| FollowedRecord {
                        fingerprint: f.info.fingerprint,
                        query: f.info.query.clone(),
                        kind: f.info.kind.to_string(),
                        related: f.related,
                        before: f.before,
                        after: c.after,
                    })
                    .collect(),
            })
            .collect();
        let file = HistoryFile {
            format: FORMAT.into(),
            version: HISTORY_FORMAT_VERSION,
            saved_at_ms: now_ms,
            fingerprints,
            markers,
            next_marker_id,
            versions,
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "history".into());
        let tmp = path.with_file_name(format!(".{name}.tmp"));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            // Normalized texts still say what the application queries.
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let f = options.open(&tmp).map_err(io_error(&tmp))?;
        // Streamed: a full table is tens of MiB of JSON, not worth holding
        // twice.
        let mut w = std::io::BufWriter::new(f);
        serde_json::to_writer(&mut w, &file).map_err(|e| io_error(&tmp)(e.into()))?;
        w.flush().map_err(io_error(&tmp))?;
        let f = w.into_inner().map_err(|e| io_error(&tmp)(e.into_error()))?;
        f.sync_all().map_err(io_error(&tmp))?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(io_error(path))
    }

    /// Restores what `save_history` wrote. A missing file is an empty
    /// history; a corrupt one or one of another format version is an
    /// error and restores nothing. Fingerprints already known (and any
    /// beyond `max_fingerprints`) are left as they are.
    pub fn load_history(&self, path: &Path, now_ms: u64) -> Result<LoadedHistory, HistoryError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(LoadedHistory::default())
            }
            Err(e) => return Err(io_error(path)(e)),
        };
        let corrupt = |message: String| HistoryError::Corrupt {
            path: path.to_path_buf(),
            message,
        };
        let head: Head = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        if head.format != FORMAT {
            return Err(corrupt(format!("format `{}`", head.format)));
        }
        if head.version != HISTORY_FORMAT_VERSION {
            return Err(HistoryError::Version {
                path: path.to_path_buf(),
                found: head.version,
                expected: HISTORY_FORMAT_VERSION,
            });
        }
        let file: HistoryFile =
            serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        let mut loaded = LoadedHistory::default();
        {
            let mut store = lock(&self.store);
            for r in file.fingerprints {
                if store.entries.len() >= self.config.max_fingerprints {
                    break;
                }
                if store.entries.contains_key(&r.fingerprint) {
                    continue;
                }
                let Some(stats) = restore_stats(&r, now_ms) else {
                    continue;
                };
                let info = Arc::new(StatementInfo {
                    fingerprint: r.fingerprint,
                    query: r.query,
                    kind: r.kind.into(),
                });
                self.catalog.insert(r.fingerprint, info.clone());
                store.entries.insert(
                    r.fingerprint,
                    Box::new(Entry {
                        info,
                        stats,
                        crossed: 0,
                    }),
                );
                loaded.fingerprints += 1;
            }
        }
        let mut book = lock(&self.marks.book);
        let max = self.config.markers.max_markers.max(1);
        let skip = file.markers.len().saturating_sub(max);
        let restored: Vec<StoredMarker> = file
            .markers
            .into_iter()
            .skip(skip)
            .map(|m| StoredMarker {
                marker: m.marker,
                followed: m
                    .followed
                    .into_iter()
                    .map(|f| Followed {
                        info: Arc::new(StatementInfo {
                            fingerprint: f.fingerprint,
                            query: f.query,
                            kind: f.kind.into(),
                        }),
                        related: f.related,
                        before: f.before,
                        snapshot: None,
                        frozen_after: Some(f.after),
                    })
                    .collect(),
            })
            .collect();
        loaded.markers = restored.len();
        let newest_id = restored.iter().map(|m| m.marker.id).max().unwrap_or(0);
        for m in restored.into_iter().rev() {
            book.markers.push_front(m);
        }
        while book.markers.len() > max {
            book.markers.pop_front();
        }
        book.next_id = book.next_id.max(file.next_marker_id).max(newest_id + 1);
        for (key, values) in file.versions {
            book.versions.entry(key).or_insert(values);
        }
        Ok(loaded)
    }
}

/// A fingerprint's statistics from its saved slices: the cumulative
/// figures are the sum of the day kept, as if pgvigil had been running.
fn restore_stats(r: &FingerprintRecord, now_ms: u64) -> Option<QueryStats> {
    let mut stats = QueryStats::new(r.first_seen_ms);
    stats.last_seen_ms = r.last_seen_ms;
    let mut slices = Vec::with_capacity(r.slices.len());
    let mut end = 0u64;
    for s in &r.slices {
        // Out of order, overlapping, future (the clock went back) or
        // nonsense slices are skipped rather than trusted: window sums and
        // recording assume order.
        if s.minute < end
            || s.minute > now_ms / 60_000
            || !matches!(s.span, 1 | 5 | 60)
            || s.minute % s.span != 0
        {
            continue;
        }
        let Some(histogram) = LatencyHistogram::from_parts(s.bits, s.first, s.counts.clone())
        else {
            continue;
        };
        end = s.minute + s.span;
        slices.push(Slice {
            minute: s.minute,
            span: s.span,
            totals: s.totals,
            histogram,
        });
    }
    stats.kept_slices = slices.into_boxed_slice();
    stats.fold_history(now_ms / 60_000);
    if stats.kept_slices.is_empty() {
        return None;
    }
    for s in stats.kept_slices.iter() {
        stats.totals.merge(&s.totals);
        stats.histogram.merge(&s.histogram);
    }
    stats.usage = 1.0;
    Some(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Execution, InsightConfig, SortBy};

    const T0: u64 = 1_800_000_000_000;

    fn exec(fp: u64, us: u64) -> Execution {
        Execution {
            fingerprint: fp,
            duration_us: us,
            rows: 2,
            sqlstate: None,
            caller: 0,
        }
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "pgvigil-history-test-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::create_dir_all(&dir);
        dir.join("history.json")
    }

    #[test]
    fn a_fingerprint_seen_in_one_minute_is_saved_with_that_minute() {
        let path = scratch("one-minute");
        let a = Insight::new(InsightConfig::default());
        for us in [300, 4_000, 90_000] {
            a.record(exec(9, us));
        }
        a.flush(T0);
        let now = T0 + 1_000;
        a.save_history(&path, now).unwrap();
        let b = Insight::new(InsightConfig::default());
        assert_eq!(b.load_history(&path, now).unwrap().fingerprints, 1);
        let (before, after) = (a.query(9, now).unwrap(), b.query(9, now).unwrap());
        assert_eq!(before.minutes.len(), 1);
        assert_eq!(after.minutes, before.minutes);
        assert_eq!(after.row.calls, 3);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn history_and_markers_survive_a_save_and_load() {
        let path = scratch("roundtrip");
        let a = Insight::new(InsightConfig::default());
        a.register(Arc::new(StatementInfo {
            fingerprint: 5,
            query: "SELECT * FROM t WHERE a = $1".into(),
            kind: "SELECT".into(),
        }));
        for hour in 0..3u64 {
            for _ in 0..10 {
                a.record(exec(5, 1_000 + hour));
            }
            a.flush(T0 + hour * 3_600_000);
        }
        let m = a.add_manual_marker("release 7", T0 + 2 * 3_600_000 + 600_000);
        for _ in 0..10 {
            a.record(exec(5, 500));
        }
        a.note_statement(
            "SELECT",
            "SELECT $1",
            &[("version".into(), "1".into())],
            true,
            T0,
        );
        let now = T0 + 3 * 3_600_000 + 1_000;
        a.save_history(&path, now).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("SELECT * FROM t WHERE a = $1"));

        let b = Insight::new(InsightConfig::default());
        let loaded = b.load_history(&path, now).unwrap();
        assert_eq!(
            loaded,
            LoadedHistory {
                fingerprints: 1,
                markers: 1
            }
        );
        let rows = b.queries(SortBy::Calls, 10, Some(60 * 24), now);
        assert_eq!(rows[0].calls, 40);
        assert_eq!(rows[0].query, "SELECT * FROM t WHERE a = $1");
        let r = b.marker(m.id).unwrap();
        assert_eq!(r.marker.name, "release 7");
        assert_eq!(r.comparisons[0].after.calls, 10);
        // Ids go on from where they were; the known version is no change.
        let next = b.add_manual_marker("next", now);
        assert_eq!(next.id, m.id + 1);
        b.note_statement(
            "SELECT",
            "SELECT $1",
            &[("version".into(), "1".into())],
            true,
            now,
        );
        assert_eq!(b.markers().len(), 2);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn a_corrupt_or_other_version_file_is_refused_and_a_missing_one_is_empty() {
        let path = scratch("bad");
        let i = Insight::new(InsightConfig::default());
        assert_eq!(i.load_history(&path, T0).unwrap(), LoadedHistory::default());
        std::fs::write(&path, b"{\"format\":\"pgvigil-history\",\"ver").unwrap();
        assert!(matches!(
            i.load_history(&path, T0),
            Err(HistoryError::Corrupt { .. })
        ));
        std::fs::write(&path, b"{\"format\":\"pgvigil-history\",\"version\":999}").unwrap();
        assert!(matches!(
            i.load_history(&path, T0),
            Err(HistoryError::Version { found: 999, .. })
        ));
        assert!(i.queries(SortBy::Calls, 10, None, T0).is_empty());
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn history_from_the_future_is_not_restored() {
        // The clock was set back between the save and the start.
        let path = scratch("future");
        let a = Insight::new(InsightConfig::default());
        a.record(exec(1, 100));
        a.flush(T0);
        a.save_history(&path, T0).unwrap();
        let b = Insight::new(InsightConfig::default());
        let loaded = b.load_history(&path, T0 - 600_000).unwrap();
        assert_eq!(loaded.fingerprints, 0);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn history_older_than_a_day_is_not_restored() {
        let path = scratch("old");
        let a = Insight::new(InsightConfig::default());
        a.record(exec(1, 100));
        a.flush(T0);
        a.save_history(&path, T0).unwrap();
        let b = Insight::new(InsightConfig::default());
        let loaded = b.load_history(&path, T0 + 25 * 3_600_000).unwrap();
        assert_eq!(loaded.fingerprints, 0);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }
}
