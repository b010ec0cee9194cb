//! The health sampler: every `advisor.health_interval`, one short-lived
//! connection per database (opened by `AdvisorLink`, outside the pools,
//! so it never appears in pool statistics or takes a client's slot)
//! reads the statistics views and the index catalog, then closes.
//!
//! A connection per sample rather than one kept open: between samples
//! pgvigil holds no backend of its own, so PostgreSQL's connection count
//! is the pools' alone most of the time, and a server restart needs no
//! reconnect logic here.
//!
//! A sample waits for a quiet moment: while a pool of the database has
//! clients waiting for a server, or did within the last `QUIET`, an extra
//! backend would compete with them for PostgreSQL's connection slots, so
//! the sample is put off (at most one interval, then taken anyway). A
//! paused database (console PAUSE) is not touched at all.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use pgvigil_advisor::{
    hygiene, sample_health, Connector, HealthBoard, HealthSample, HealthSettings, HygieneSettings,
};
use tokio::time::Instant;

use crate::advisor_link::AdvisorLink;
use crate::{analysis, Shared};

/// How long a database's pools must have had no waiting client before a
/// sample opens its connection; also the delay of the first sample after
/// start.
const QUIET: Duration = Duration::from_secs(1);
const QUIET_POLL: Duration = Duration::from_millis(100);

pub(crate) async fn sample_periodically(shared: Arc<Shared>, board: Arc<HealthBoard>) {
    let advisor = &shared.config.advisor;
    let link = AdvisorLink::new(shared.clone(), advisor.statement_timeout);
    let health = HealthSettings {
        long_transaction: advisor.long_transaction,
        max_tables: advisor.health_max_tables,
        max_sessions: advisor.health_max_sessions,
    };
    let hygiene_settings = HygieneSettings {
        unused_index_min_age: advisor.unused_index_min_age,
    };
    // The errors of each database's previous sample: a lasting problem
    // (a missing privilege) is logged when it starts and when it ends, not
    // every interval.
    let mut last_errors: HashMap<String, Vec<String>> = HashMap::new();
    loop {
        let started = Instant::now();
        for database in link.databases() {
            if !wait_for_quiet(&shared, &database, advisor.health_interval).await {
                continue;
            }
            let sample = sample_one(&link, &database, &health, &hygiene_settings).await;
            let before = last_errors.entry(database.clone()).or_default();
            if *before != sample.errors {
                if sample.errors.is_empty() {
                    tracing::info!(database = %database, "health sample complete again");
                } else {
                    tracing::warn!(
                        database = %database,
                        "health sample incomplete: {}",
                        sample.errors.join("; ")
                    );
                }
                before.clone_from(&sample.errors);
            }
            // Index hygiene is advice too: GET /api/advice lists it with
            // the index recommendations.
            if let Some(advisor) = shared.advisor.get() {
                advisor.state.set_hygiene(&database, sample.hygiene.clone());
            }
            board.record(sample);
        }
        tokio::time::sleep_until(started + advisor.health_interval).await;
    }
}

async fn sample_one(
    link: &AdvisorLink,
    database: &str,
    health: &HealthSettings,
    hygiene_settings: &HygieneSettings,
) -> HealthSample {
    let mut sample = match link.connect(database).await {
        Ok(mut db) => {
            let mut sample = sample_health(&mut db, database, health).await;
            match hygiene(&mut db, database, hygiene_settings).await {
                Ok(advice) => sample.hygiene = advice,
                Err(e) => sample.errors.push(format!("index hygiene: {e}")),
            }
            sample
        }
        Err(e) => HealthSample {
            database: database.to_string(),
            errors: vec![format!("connect: {e}")],
            ..HealthSample::default()
        },
    };
    sample.sampled_at = pgvigil_insight::time::rfc3339_ms(analysis::now_ms());
    sample
}

/// Waits until no pool of `database` has had a waiting client for
/// `QUIET`, or `limit` has passed; false when the database is paused.
async fn wait_for_quiet(shared: &Shared, database: &str, limit: Duration) -> bool {
    let start = Instant::now();
    let mut quiet_since = start;
    loop {
        let pools: Vec<_> = shared
            .all_pools()
            .into_iter()
            .filter(|p| &*p.database == database)
            .map(|p| p.snapshot())
            .collect();
        if pools.iter().any(|s| s.paused) {
            return false;
        }
        let now = Instant::now();
        if pools
            .iter()
            .any(|s| s.waiting > 0 || (s.idle == 0 && s.total >= s.pool_size))
        {
            quiet_since = now;
        }
        if now - quiet_since >= QUIET || now - start >= limit {
            return true;
        }
        tokio::time::sleep(QUIET_POLL).await;
    }
}
