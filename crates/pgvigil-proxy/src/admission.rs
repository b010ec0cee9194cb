//! A client's place under `max_client_conn`, and the handle that ends its
//! task when shutdown cuts the sessions short.
//!
//! Each accepted client holds an `Admission` for as long as its task runs.
//! The listener keeps one slot per admitted client with the task's abort
//! handle: 16 bytes, where a `JoinSet` entry took 64 for every connected
//! client. A task ending frees its slot itself, so nothing has to reap
//! finished tasks, and the free slots are reused.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Semaphore;
use tokio::task::AbortHandle;

/// End of the free list.
const NONE: u32 = u32::MAX;

enum Slot {
    Free {
        next: u32,
    },
    /// Admitted; the task's handle not stored yet.
    Reserved,
    Running(AbortHandle),
    /// The task ended before its handle was stored.
    Ended,
}

struct Slots {
    entries: Vec<Slot>,
    free: u32,
}

pub(crate) struct Admissions {
    limit: usize,
    permits: Semaphore,
    slots: Mutex<Slots>,
}

/// One client's place: given back, with its slot, when dropped.
pub(crate) struct Admission {
    admissions: Arc<Admissions>,
    slot: u32,
}

impl Admissions {
    pub(crate) fn new(limit: usize) -> Arc<Admissions> {
        let limit = limit.min(u32::MAX as usize - 1);
        Arc::new(Admissions {
            limit,
            permits: Semaphore::new(limit),
            slots: Mutex::new(Slots {
                entries: Vec::new(),
                free: NONE,
            }),
        })
    }

    fn slots(&self) -> MutexGuard<'_, Slots> {
        // Slots hold no invariant a panicking holder could break halfway.
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A place for one more client, if `max_client_conn` allows it; its
    /// task's handle goes to `started` once the task is spawned.
    pub(crate) fn admit(self: &Arc<Self>) -> Option<Admission> {
        self.permits.try_acquire().ok()?.forget();
        let mut slots = self.slots();
        let slot = match slots.free {
            NONE => {
                slots.entries.push(Slot::Reserved);
                (slots.entries.len() - 1) as u32
            }
            free => {
                let i = free as usize;
                if let Slot::Free { next } = slots.entries[i] {
                    slots.free = next;
                }
                slots.entries[i] = Slot::Reserved;
                free
            }
        };
        Some(Admission {
            admissions: self.clone(),
            slot,
        })
    }

    /// The task holding `slot` was spawned: `cut_all` can end it now.
    pub(crate) fn started(&self, slot: u32, task: AbortHandle) {
        let mut slots = self.slots();
        let i = slot as usize;
        match slots.entries[i] {
            Slot::Reserved => slots.entries[i] = Slot::Running(task),
            // Over already: the slot was left for this call to free.
            _ => slots.release(i),
        }
    }

    /// Clients admitted and not gone.
    pub(crate) fn active(&self) -> usize {
        self.limit - self.permits.available_permits()
    }

    /// Resolves once every admitted client's task has ended.
    pub(crate) async fn all_ended(&self) {
        // Every place back at once: no task holds one any more.
        if let Ok(all) = self.permits.acquire_many(self.limit as u32).await {
            drop(all);
        }
    }

    /// Ends every admitted client's task (each drops its session, which
    /// tells its client why); `all_ended` then waits for them.
    pub(crate) fn cut_all(&self) {
        for slot in &self.slots().entries {
            if let Slot::Running(task) = slot {
                task.abort();
            }
        }
    }
}

impl Slots {
    fn release(&mut self, i: usize) {
        self.entries[i] = Slot::Free { next: self.free };
        self.free = i as u32;
    }
}

impl Admission {
    pub(crate) fn slot(&self) -> u32 {
        self.slot
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        {
            let mut slots = self.admissions.slots();
            let i = self.slot as usize;
            match slots.entries[i] {
                // `started` has not run yet: it frees the slot.
                Slot::Reserved => slots.entries[i] = Slot::Ended,
                _ => slots.release(i),
            }
        }
        self.admissions.permits.add_permits(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    /// Admits a client whose task runs until `release` is sent.
    fn client(admissions: &Arc<Admissions>) -> Option<tokio::sync::oneshot::Sender<()>> {
        let admission = admissions.admit()?;
        let slot = admission.slot();
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _held = admission;
            let _ = released.await;
        });
        admissions.started(slot, task.abort_handle());
        Some(release)
    }

    #[test]
    fn places_run_out_at_the_limit_and_come_back_with_their_slots() {
        runtime().block_on(async {
            let admissions = Admissions::new(2);
            let a = client(&admissions).expect("first");
            let _b = client(&admissions).expect("second");
            assert!(admissions.admit().is_none(), "past max_client_conn");
            assert_eq!(admissions.active(), 2);
            a.send(()).expect("task waits");
            tokio::time::timeout(std::time::Duration::from_secs(5), async {
                while admissions.active() > 1 {
                    tokio::task::yield_now().await;
                }
            })
            .await
            .expect("the first client's place came back");
            let c = admissions.admit().expect("a place given back is reused");
            assert_eq!(c.slot(), 0, "and so is its slot");
            assert_eq!(admissions.slots().entries.len(), 2, "no slot added");
        });
    }

    #[test]
    fn a_task_that_ends_before_its_handle_is_stored_leaves_no_handle_behind() {
        runtime().block_on(async {
            let admissions = Admissions::new(4);
            let admission = admissions.admit().expect("place");
            let slot = admission.slot();
            let task = tokio::spawn(async move { drop(admission) });
            let handle = task.abort_handle();
            task.await.expect("task");
            admissions.started(slot, handle);
            assert!(matches!(admissions.slots().entries[0], Slot::Free { .. }));
            assert_eq!(admissions.active(), 0);
        });
    }

    #[test]
    fn cut_all_ends_running_tasks_and_all_ended_waits_for_them() {
        runtime().block_on(async {
            let admissions = Admissions::new(8);
            for _ in 0..3 {
                let admission = admissions.admit().expect("place");
                let slot = admission.slot();
                let task = tokio::spawn(async move {
                    let _held = admission;
                    std::future::pending::<()>().await;
                });
                admissions.started(slot, task.abort_handle());
            }
            tokio::task::yield_now().await;
            assert_eq!(admissions.active(), 3);
            let waiting =
                tokio::time::timeout(std::time::Duration::from_millis(50), admissions.all_ended());
            assert!(waiting.await.is_err(), "tasks still run");
            admissions.cut_all();
            tokio::time::timeout(std::time::Duration::from_secs(5), admissions.all_ended())
                .await
                .expect("every task ended");
            assert_eq!(admissions.active(), 0);
            assert!(admissions
                .slots()
                .entries
                .iter()
                .all(|s| matches!(s, Slot::Free { .. })));
        });
    }
}
