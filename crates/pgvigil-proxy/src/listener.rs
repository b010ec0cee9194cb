//! The accept loop: caps clients at `max_client_conn`, survives accept
//! errors such as running out of file descriptors, runs pool upkeep, and
//! shuts down gracefully.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pgvigil_config::Config;
use tokio::net::TcpListener;
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use crate::admission::Admissions;
use crate::advisor_link::{AdvisorLink, InsightStatements};
use crate::shutdown::{self, Shutdown};
use crate::{analysis, connection, health, history, Shared};

/// How often pools close idle connections and top up `min_pool_size`.
const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(1);

type AdvisorTask = pgvigil_advisor::Advisor<AdvisorLink, InsightStatements>;

pub struct Proxy {
    shared: Arc<Shared>,
    listener: TcpListener,
    /// Spawned by `run`, so nothing advises before the proxy serves.
    advisor: Option<AdvisorTask>,
    /// Where the work that forwards nothing runs (see `with_background`).
    background: Option<Handle>,
}

impl Proxy {
    /// Binds the client listener; nothing is served until `run`.
    pub async fn bind(config: Config) -> io::Result<Proxy> {
        let listener = TcpListener::bind(config.listen).await?;
        let shared = Shared::new(config).map_err(io::Error::other)?;
        if let Some(insight) = &shared.insight {
            analysis::start_lint(insight);
        }
        let shared = Arc::new(shared);
        let settings = shared.config.advisor.clone();
        let advisor = settings.enabled.then(|| {
            let link = AdvisorLink::new(shared.clone(), settings.statement_timeout);
            let statements = InsightStatements {
                insight: shared.insight.clone(),
            };
            let (task, handle) = pgvigil_advisor::advisor(link, statements, settings);
            if let Some(insight) = &shared.insight {
                crate::advisor_link::connect_insight(insight, &handle);
            }
            let _ = shared.advisor.set(handle);
            task
        });
        Ok(Proxy {
            shared,
            listener,
            advisor,
            background: None,
        })
    }

    /// Runs the periodic work that forwards nothing (the advisor's
    /// passes, health samples, history saves) on another
    /// runtime. With 5,000 fingerprints an advisor pass ranks all of them
    /// and held a one-thread runtime for milliseconds at a time, during
    /// which no client's bytes moved (BENCHMARKS.md). Without it, that
    /// work shares `run`'s runtime.
    pub fn with_background(mut self, runtime: Handle) -> Proxy {
        self.background = Some(runtime);
        self
    }

    /// Every pool, for the admin surface.
    pub fn pools(&self) -> Vec<Arc<crate::ServerPool>> {
        self.shared.all_pools()
    }

    /// Lets the console's RELOAD (and the binary's SIGHUP) re-read the
    /// configuration.
    pub fn set_reloader(&self, reloader: crate::Reloader) {
        let _ = self.shared.reloader.set(reloader);
    }

    /// A handle that can reload the configuration while `run` serves.
    pub fn control(&self) -> ProxyControl {
        ProxyControl {
            shared: self.shared.clone(),
        }
    }

    /// Query insight, for the admin API; None when analytics are off.
    pub fn insight(&self) -> Option<Arc<pgvigil_insight::Insight>> {
        self.shared.insight.clone()
    }

    /// Database health, for the admin API; None when the advisor is off.
    pub fn health(&self) -> Option<Arc<pgvigil_advisor::HealthBoard>> {
        self.shared.health.clone()
    }

    /// Plans and advice, for the admin API; None when `[advisor]` is off.
    pub fn advisor(&self) -> Option<pgvigil_advisor::AdvisorHandle> {
        self.shared.advisor.get().cloned()
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves clients until the first shutdown request, then stops
    /// accepting and ends the sessions as `Shutdown` says (`shutdown.rs`);
    /// a later request can make it faster.
    pub async fn run(self, mut requests: mpsc::UnboundedReceiver<Shutdown>) {
        let shared = self.shared;
        let limit = shared.config.max_client_conn;
        let admissions = Admissions::new(limit);
        // Pool upkeep opens server connections, which belong with the
        // sessions that use them: on this runtime.
        let upkeep = tokio::spawn(maintain_pools(shared.clone()));
        let background = self.background.unwrap_or_else(Handle::current);
        // The merge stays with the threads that record: on another thread
        // the buffers' memory crossed between allocators' heaps, and RSS
        // at 5,000 clients grew by 5 MB (BENCHMARKS.md).
        let flusher = shared
            .insight
            .clone()
            .map(|i| tokio::spawn(analysis::flush_periodically(i)));
        let saver = shared
            .insight
            .clone()
            .zip(shared.config.advisor.history_file.clone())
            .map(|(i, path)| background.spawn(history::save_periodically(i, path)));
        let advisor = self.advisor.map(|a| background.spawn(a.serve()));
        for pool in shared.pools.values() {
            pool.maintain();
        }
        // Health sampling: its own connections, stopped with the proxy.
        let health_sampler = shared
            .health
            .clone()
            .map(|board| background.spawn(health::sample_periodically(shared.clone(), board)));
        let console_shutdown = shared.shutdown.notified();
        tokio::pin!(console_shutdown);
        let mut backoff = Duration::from_millis(10);
        let mode = loop {
            let accepted = tokio::select! {
                mode = requests.recv() => break mode.unwrap_or(Shutdown::Smart),
                _ = &mut console_shutdown => break Shutdown::Safe,
                accepted = self.listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, peer)) => {
                    backoff = Duration::from_millis(10);
                    match admissions.admit() {
                        Some(admission) => {
                            let slot = admission.slot();
                            let task = tokio::spawn(connection::serve(
                                shared.clone(),
                                stream,
                                peer,
                                admission,
                            ));
                            admissions.started(slot, task.abort_handle());
                        }
                        None => {
                            tokio::spawn(connection::reject_too_many(
                                shared.clone(),
                                stream,
                                limit,
                            ));
                        }
                    }
                }
                Err(e) => {
                    // EMFILE and friends: the listener itself is fine, so
                    // wait for descriptors to free up instead of spinning
                    // or exiting.
                    tracing::warn!("accept failed: {e}; retrying in {backoff:?}");
                    tokio::select! {
                        mode = requests.recv() => break mode.unwrap_or(Shutdown::Smart),
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        };
        drop(self.listener);
        shutdown::begin(mode);
        // No new connection of pgvigil's own while the sessions drain.
        if let Some(h) = &health_sampler {
            h.abort();
        }
        let limit = shared.shutdown_timeout();
        tracing::info!(
            "shutting down ({mode:?}): waiting up to {limit:?} for {} sessions",
            admissions.active()
        );
        let deadline = tokio::time::Instant::now() + limit;
        let mut check = tokio::time::interval(Duration::from_millis(100));
        while !shutdown::cutting() && admissions.active() > 0 {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => break,
                _ = admissions.all_ended() => break,
                more = requests.recv() => match more {
                    Some(_) => break,
                    None => std::future::pending::<()>().await,
                },
                _ = check.tick() => {
                    if shutdown::refusing_new_transactions() && no_server_in_use(&shared) {
                        break;
                    }
                }
            }
        }
        // Everyone left is told why before the connection closes (the
        // session's drop writes 57P01).
        shutdown::cut();
        let left = admissions.active();
        if left > 0 {
            tracing::info!("ending {left} sessions");
        }
        admissions.cut_all();
        admissions.all_ended().await;
        upkeep.abort();
        if let Some(f) = flusher {
            f.abort();
        }
        if let Some(a) = advisor {
            a.abort();
        }
        if let Some(i) = &shared.insight {
            i.flush(analysis::now_ms());
        }
        if let Some(s) = saver {
            s.abort();
        }
        history::save_at_shutdown(shared.insight.clone(), &shared.config.advisor).await;
    }
}

/// Reloads a running proxy's configuration.
#[derive(Clone)]
pub struct ProxyControl {
    shared: Arc<Shared>,
}

impl ProxyControl {
    /// Re-reads the configuration and applies it; returns the settings
    /// that need a restart, or why nothing changed.
    pub fn reload(&self) -> Result<Vec<String>, String> {
        self.shared.reload()
    }

    /// Every pool now, auth_query's included.
    pub fn pools(&self) -> Vec<Arc<crate::ServerPool>> {
        self.shared.all_pools()
    }
}

/// Safe shutdown: every server connection is back in its pool, so no
/// transaction is left to finish.
fn no_server_in_use(shared: &Shared) -> bool {
    shared.all_pools().iter().all(|p| {
        let s = p.snapshot();
        s.total == s.idle
    })
}

async fn maintain_pools(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(MAINTENANCE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for pool in shared.pools.values() {
            pool.maintain();
        }
    }
}
