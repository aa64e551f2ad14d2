//! The threads queries evaluate on, kept between queries.
//!
//! Evaluation recurses over the query's tree, so it runs on a thread with a
//! stack sized for the deepest query accepted, not on the async runtime.
//! Starting such a thread took 0.1–0.2 ms, as long as a dashboard refresh
//! served from the answer cache spends evaluating, so a thread that
//! finished a query waits a while for the next one. The caller bounds how many run at once (the query
//! slots); at most that many wait idle, and an idle thread ends after
//! [`IDLE_FOR`] without work or once its pool is gone.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// How long an idle thread waits for work before it ends.
const IDLE_FOR: Duration = Duration::from_secs(30);

/// Work for one thread.
type Job = Box<dyn FnOnce() + Send>;

/// Query threads: idle ones waiting for work, new ones started when none
/// waits.
#[derive(Debug)]
pub struct QueryThreads {
    /// Each idle thread's number and the way to hand it a job.
    idle: Mutex<Vec<(u64, Sender<Job>)>>,
    /// At most this many wait idle.
    max_idle: usize,
    stack_bytes: usize,
    next_id: AtomicU64,
}

impl QueryThreads {
    /// Threads with `stack_bytes` stacks, keeping at most `max_idle` idle.
    pub fn new(max_idle: usize, stack_bytes: usize) -> Arc<Self> {
        Arc::new(Self {
            idle: Mutex::new(Vec::new()),
            max_idle,
            stack_bytes,
            next_id: AtomicU64::new(0),
        })
    }

    /// Runs `job` on an idle thread, or on a new one when none waits.
    /// A job that panics ends as a dropped job does (whatever it was to
    /// send is never sent); its thread lives on.
    pub fn run(self: &Arc<Self>, job: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
        let mut job: Job = Box::new(job);
        while let Some((_, thread)) = lock(&self.idle).pop() {
            match thread.send(job) {
                Ok(()) => return Ok(()),
                // It ended between being listed and now: try another.
                Err(mpsc::SendError(back)) => job = back,
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (hand, work) = mpsc::channel::<Job>();
        // Cannot fail: the receiver is alive.
        let _ = hand.send(job);
        let pool = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("dcmon-query".to_owned())
            .stack_size(self.stack_bytes)
            .spawn(move || {
                loop {
                    match work.recv_timeout(IDLE_FOR) {
                        Ok(job) => {
                            let _ = catch_unwind(AssertUnwindSafe(job));
                            if !wait_again(&pool, id, &hand) {
                                return;
                            }
                        }
                        Err(RecvTimeoutError::Timeout) => {
                            if leave(&pool, id) {
                                return;
                            }
                        }
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
            })?;
        Ok(())
    }

    /// Threads waiting for work now.
    pub fn idle(&self) -> usize {
        lock(&self.idle).len()
    }
}

/// Lists thread `id` as idle; `false` when it should end instead (the
/// pool is gone or has enough idle threads).
fn wait_again(pool: &Weak<QueryThreads>, id: u64, hand: &Sender<Job>) -> bool {
    let Some(pool) = pool.upgrade() else {
        return false;
    };
    let mut idle = lock(&pool.idle);
    if idle.len() >= pool.max_idle {
        return false;
    }
    idle.push((id, hand.clone()));
    true
}

/// Takes thread `id` off the idle list after waiting long enough: `true`
/// when it may end, `false` when a job was just handed to it (it was
/// taken off the list already) and it must run that first.
fn leave(pool: &Weak<QueryThreads>, id: u64) -> bool {
    let Some(pool) = pool.upgrade() else {
        return true;
    };
    let mut idle = lock(&pool.idle);
    match idle.iter().position(|(listed, _)| *listed == id) {
        Some(at) => {
            idle.swap_remove(at);
            true
        }
        None => false,
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;

    fn thread_of(threads: &Arc<QueryThreads>) -> std::thread::ThreadId {
        let (tx, rx) = channel();
        threads
            .run(move || tx.send(std::thread::current().id()).unwrap())
            .unwrap();
        rx.recv().unwrap()
    }

    /// Waits (boundedly) for the pool to list `n` idle threads.
    fn wait_idle(threads: &QueryThreads, n: usize) {
        for _ in 0..2000 {
            if threads.idle() == n {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        panic!("{} idle threads, expected {n}", threads.idle());
    }

    #[test]
    fn a_finished_thread_runs_the_next_job() {
        let threads = QueryThreads::new(2, 1 << 20);
        let first = thread_of(&threads);
        wait_idle(&threads, 1);
        assert_eq!(thread_of(&threads), first);
    }

    #[test]
    fn jobs_at_once_get_threads_of_their_own_and_idle_ones_are_bounded() {
        let threads = QueryThreads::new(1, 1 << 20);
        let (started, all_started) = channel();
        let release = Arc::new(std::sync::Barrier::new(4));
        for _ in 0..3 {
            let started = started.clone();
            let release = Arc::clone(&release);
            threads
                .run(move || {
                    started.send(std::thread::current().id()).unwrap();
                    release.wait();
                })
                .unwrap();
        }
        let ids: std::collections::HashSet<_> =
            (0..3).map(|_| all_started.recv().unwrap()).collect();
        assert_eq!(ids.len(), 3, "three jobs at once need three threads");
        release.wait();
        // Only one of the three stays.
        wait_idle(&threads, 1);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(threads.idle(), 1);
    }

    #[test]
    fn a_panicking_job_drops_what_it_holds_and_its_thread_goes_on() {
        let threads = QueryThreads::new(1, 1 << 20);
        let (tx, rx) = channel::<()>();
        threads
            .run(move || {
                let _held = tx;
                panic!("evaluation bug");
            })
            .unwrap();
        assert!(rx.recv().is_err(), "the sender is dropped, not sent");
        wait_idle(&threads, 1);
        let (tx, rx) = channel();
        threads.run(move || tx.send(7).unwrap()).unwrap();
        assert_eq!(rx.recv().unwrap(), 7);
    }
}
