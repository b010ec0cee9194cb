//! Leak guards: the timeouts that keep a stuck or leaking application
//! from holding server connections hostage (PgBouncer's `query_timeout`,
//! `idle_transaction_timeout`, `client_idle_timeout`, and PostgreSQL's
//! `transaction_timeout`).
//!
//! The session keeps a few timestamps up to date and one timer armed; it
//! never resets the timer per transaction (a timer-wheel operation each
//! time). When the timer fires, `GuardClock::check` decides from the
//! timestamps whether a guard is due, or when to look again. Time is
//! passed in, so the rules are tested without sockets or sleeping.

use std::time::Duration;

use pgvigil_config::PoolSettings;

use crate::clock::MonoTime;

/// The guards' durations; zero turns a guard off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct GuardSettings {
    pub(crate) query_timeout: Duration,
    pub(crate) idle_transaction_timeout: Duration,
    pub(crate) client_idle_timeout: Duration,
    pub(crate) transaction_timeout: Duration,
}

/// How long a cancelled statement may take to stop before pgvigil gives
/// up on the server connection: `query_timeout` again, within these
/// bounds. PostgreSQL answers a cancel in milliseconds unless the backend
/// is stuck (frozen, or in an uninterruptible call).
const CANCEL_GRACE_MIN: Duration = Duration::from_secs(1);
const CANCEL_GRACE_MAX: Duration = Duration::from_secs(5);

fn cancel_grace(query_timeout: Duration) -> Duration {
    query_timeout.clamp(CANCEL_GRACE_MIN, CANCEL_GRACE_MAX)
}

impl GuardSettings {
    pub(crate) fn of(settings: &PoolSettings) -> GuardSettings {
        GuardSettings {
            query_timeout: settings.query_timeout,
            idle_transaction_timeout: settings.idle_transaction_timeout,
            client_idle_timeout: settings.client_idle_timeout,
            transaction_timeout: settings.transaction_timeout,
        }
    }

    pub(crate) fn any(&self) -> bool {
        *self != GuardSettings::default()
    }

    /// The shortest guard that is on: how long the timer may sleep when
    /// nothing is due.
    fn shortest(&self) -> Duration {
        [
            self.query_timeout,
            self.idle_transaction_timeout,
            self.client_idle_timeout,
            self.transaction_timeout,
        ]
        .into_iter()
        .filter(|d| !d.is_zero())
        .min()
        .unwrap_or(Duration::from_secs(3600))
    }
}

/// Which guard fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Guard {
    /// A statement ran past `query_timeout`: cancel it.
    Query,
    /// The server did not stop the cancelled statement in time.
    CancelIgnored,
    IdleTransaction,
    ClientIdle,
    Transaction,
}

impl Guard {
    /// The setting that fired, for messages and metrics.
    pub(crate) fn setting(self) -> &'static str {
        match self {
            Guard::Query | Guard::CancelIgnored => "query_timeout",
            Guard::IdleTransaction => "idle_transaction_timeout",
            Guard::ClientIdle => "client_idle_timeout",
            Guard::Transaction => "transaction_timeout",
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Fire(Guard),
    /// Nothing is due; look again then.
    CheckAt(MonoTime),
}

/// What the session is doing, as the guards see it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Activity {
    /// Requests are out and their replies have not all come back.
    pub(crate) waiting_on_server: bool,
    /// The attached server is inside a transaction.
    pub(crate) in_transaction: bool,
}

/// The timestamps the guards measure from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GuardClock {
    /// The client's last message, or the server's last reply.
    pub(crate) last_activity: MonoTime,
    /// When the statement now running started (the client's request
    /// after an idle server, or the previous ReadyForQuery).
    pub(crate) busy_since: MonoTime,
    pub(crate) transaction_since: Option<MonoTime>,
    pub(crate) cancel_sent_at: Option<MonoTime>,
}

impl Activity {
    pub(crate) const IDLE: Activity = Activity {
        waiting_on_server: false,
        in_transaction: false,
    };
}

impl GuardClock {
    pub(crate) fn new(now: MonoTime) -> GuardClock {
        GuardClock {
            last_activity: now,
            busy_since: now,
            transaction_since: None,
            cancel_sent_at: None,
        }
    }

    pub(crate) fn check(&self, s: &GuardSettings, a: Activity, now: MonoTime) -> Verdict {
        let mut next: Option<MonoTime> = None;
        let mut due = |start: MonoTime, limit: Duration, guard: Guard| -> Option<Guard> {
            if limit.is_zero() {
                return None;
            }
            let at = start.plus(limit);
            if at <= now {
                return Some(guard);
            }
            next = Some(next.map_or(at, |n| n.min(at)));
            None
        };
        let fired = if a.waiting_on_server {
            match self.cancel_sent_at {
                Some(sent) if !s.query_timeout.is_zero() => {
                    due(sent, cancel_grace(s.query_timeout), Guard::CancelIgnored)
                }
                _ => due(self.busy_since, s.query_timeout, Guard::Query),
            }
        } else if a.in_transaction {
            due(
                self.last_activity,
                s.idle_transaction_timeout,
                Guard::IdleTransaction,
            )
        } else {
            due(self.last_activity, s.client_idle_timeout, Guard::ClientIdle)
        };
        let fired = fired.or_else(|| match self.transaction_since {
            Some(since) if a.in_transaction => {
                due(since, s.transaction_timeout, Guard::Transaction)
            }
            _ => None,
        });
        match fired {
            Some(guard) => Verdict::Fire(guard),
            None => Verdict::CheckAt(next.unwrap_or_else(|| now.plus(s.shortest()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    const BUSY: Activity = Activity {
        waiting_on_server: true,
        in_transaction: false,
    };
    const IDLE: Activity = Activity {
        waiting_on_server: false,
        in_transaction: false,
    };
    const IDLE_IN_TX: Activity = Activity {
        waiting_on_server: false,
        in_transaction: true,
    };
    const BUSY_IN_TX: Activity = Activity {
        waiting_on_server: true,
        in_transaction: true,
    };

    #[test]
    fn each_guard_fires_only_in_its_own_state_and_after_its_own_time() {
        let t0 = MonoTime::from_nanos(1_000_000_000_000);
        let all = GuardSettings {
            query_timeout: secs(2),
            idle_transaction_timeout: secs(3),
            client_idle_timeout: secs(10),
            transaction_timeout: secs(20),
        };
        let mut clock = GuardClock::new(t0);
        clock.transaction_since = Some(t0);
        // (activity, seconds after t0, verdict)
        let table: &[(Activity, u64, Verdict)] = &[
            (BUSY, 1, Verdict::CheckAt(t0.plus(secs(2)))),
            (BUSY, 2, Verdict::Fire(Guard::Query)),
            (IDLE_IN_TX, 2, Verdict::CheckAt(t0.plus(secs(3)))),
            (IDLE_IN_TX, 3, Verdict::Fire(Guard::IdleTransaction)),
            (IDLE, 9, Verdict::CheckAt(t0.plus(secs(10)))),
            (IDLE, 10, Verdict::Fire(Guard::ClientIdle)),
            // A transaction outlives transaction_timeout even when each
            // statement is quick... (busy since t0+19 here: see below)
        ];
        for (i, (activity, after, want)) in table.iter().enumerate() {
            assert_eq!(
                clock.check(&all, *activity, t0.plus(secs(*after))),
                *want,
                "row {i}"
            );
        }
        let mut busy_again = clock;
        busy_again.busy_since = t0.plus(secs(19));
        assert_eq!(
            busy_again.check(&all, BUSY_IN_TX, t0.plus(secs(20))),
            Verdict::Fire(Guard::Transaction)
        );
        // ...but not outside a transaction.
        assert_eq!(
            busy_again.check(&all, BUSY, t0.plus(secs(20))),
            Verdict::CheckAt(t0.plus(secs(21)))
        );
    }

    #[test]
    fn guards_that_are_off_never_fire() {
        let t0 = MonoTime::from_nanos(5_000_000_000);
        let only_query = GuardSettings {
            query_timeout: secs(1),
            ..GuardSettings::default()
        };
        let clock = GuardClock::new(t0);
        let late = t0.plus(secs(3600));
        assert_eq!(
            clock.check(&only_query, IDLE_IN_TX, late),
            Verdict::CheckAt(late.plus(secs(1)))
        );
        assert_eq!(
            clock.check(&only_query, IDLE, late),
            Verdict::CheckAt(late.plus(secs(1)))
        );
        assert!(!GuardSettings::default().any());
        assert!(only_query.any());
    }

    #[test]
    fn the_grace_after_a_cancel_follows_query_timeout_within_bounds() {
        assert_eq!(cancel_grace(Duration::from_millis(200)), secs(1));
        assert_eq!(cancel_grace(secs(3)), secs(3));
        assert_eq!(cancel_grace(secs(600)), secs(5));
    }

    #[test]
    fn a_cancelled_statement_gets_a_grace_period_then_the_connection_is_given_up() {
        let t0 = MonoTime::from_nanos(5_000_000_000);
        let s = GuardSettings {
            query_timeout: secs(1),
            ..GuardSettings::default()
        };
        let mut clock = GuardClock::new(t0);
        assert_eq!(
            clock.check(&s, BUSY, t0.plus(secs(1))),
            Verdict::Fire(Guard::Query)
        );
        clock.cancel_sent_at = Some(t0.plus(secs(1)));
        assert_eq!(
            clock.check(&s, BUSY, t0.plus(Duration::from_millis(1500))),
            Verdict::CheckAt(t0.plus(secs(1) + cancel_grace(secs(1))))
        );
        assert_eq!(
            clock.check(&s, BUSY, t0.plus(secs(1) + cancel_grace(secs(1)))),
            Verdict::Fire(Guard::CancelIgnored)
        );
    }
}
