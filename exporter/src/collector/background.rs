//! Collection that is too slow for a scrape (a BMC over ipmitool, an apt
//! upgrade simulation): the work runs on a thread of its own and scrapes
//! serve its last result. [`Background`] owns the schedule, the thread and
//! the last result; [`Absence`] logs "nothing to read on this host" once
//! per process instead of on every scrape (ipmi, apt, nvme).

use std::fmt::Display;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

/// When the work runs again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// On demand: the first scrape runs the work itself (so it has data at
    /// once), and a scrape that finds the result older than this starts a
    /// run in the background and serves the old result meanwhile. Zero runs
    /// the work in every scrape, on the scrape's thread.
    Ttl(Duration),
    /// On a timer: a thread started at the first scrape runs the work, then
    /// sleeps this long, for the rest of the process's life. Scrapes never
    /// run it; until the first run ends they find no result.
    Interval(Duration),
}

/// A result and when its run ended.
#[derive(Debug, Clone)]
pub struct Stamped<T> {
    /// When the run that produced `value` ended.
    pub at: Instant,
    /// What it produced.
    pub value: T,
}

/// The work: given the previous result (so a failed run can carry the last
/// good data forward), produce the next.
type Work<T> = dyn Fn(Option<&T>) -> T + Send + Sync;

/// Background runs of one piece of work, and its last result.
pub struct Background<T> {
    inner: Arc<Inner<T>>,
    renewal: Renewal,
    /// `Interval`: the timer thread is started once.
    timer: Once,
}

struct Inner<T> {
    /// Thread name (`dcmon-ipmi`), so `top -H` says whose it is.
    thread: &'static str,
    work: Box<Work<T>>,
    last: Mutex<Option<Stamped<T>>>,
    /// Set while a background run is in progress, so only one is.
    running: AtomicBool,
}

impl<T> std::fmt::Debug for Background<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Background")
            .field("thread", &self.inner.thread)
            .field("renewal", &self.renewal)
            .finish_non_exhaustive()
    }
}

impl<T: Clone + Send + 'static> Background<T> {
    /// Work renewed as `renewal` says, on threads named `thread`.
    pub fn new(
        thread: &'static str,
        renewal: Renewal,
        work: impl Fn(Option<&T>) -> T + Send + Sync + 'static,
    ) -> Background<T> {
        Background {
            inner: Arc::new(Inner {
                thread,
                work: Box::new(work),
                last: Mutex::new(None),
                running: AtomicBool::new(false),
            }),
            renewal,
            timer: Once::new(),
        }
    }

    /// The result a scrape serves now, starting a run first where the
    /// renewal calls for one (see [`Renewal`]).
    pub fn latest(&self) -> Option<Stamped<T>> {
        match self.renewal {
            Renewal::Interval(interval) => {
                self.timer.call_once(|| self.start_timer(interval));
                self.inner.last()
            }
            Renewal::Ttl(ttl) => {
                let mut last = self.inner.lock();
                let cached = match last.as_ref() {
                    Some(cached) if !ttl.is_zero() => cached.clone(),
                    // Holding the lock here is deliberate: a second scrape
                    // waits for this run rather than starting another.
                    _ => {
                        let next = self.inner.run(last.as_ref());
                        *last = Some(next.clone());
                        return Some(next);
                    }
                };
                drop(last);
                if cached.at.elapsed() >= ttl {
                    self.start_run();
                }
                Some(cached)
            }
        }
    }

    /// Runs the work now on the calling thread and keeps its result (tests
    /// use it to have data without waiting for a timer).
    pub fn run_now(&self) -> Stamped<T> {
        let mut last = self.inner.lock();
        let next = self.inner.run(last.as_ref());
        *last = Some(next.clone());
        next
    }

    /// One background run, unless one is in progress.
    fn start_run(&self) {
        if self.inner.running.swap(true, Ordering::AcqRel) {
            return;
        }
        let inner = Arc::clone(&self.inner);
        let spawned = std::thread::Builder::new()
            .name(inner.thread.into())
            .spawn(move || {
                inner.renew();
                inner.running.store(false, Ordering::Release);
            });
        if let Err(err) = spawned {
            tracing::error!(thread = self.inner.thread, error = %err, "cannot start a background collection");
            self.inner.running.store(false, Ordering::Release);
        }
    }

    fn start_timer(&self, interval: Duration) {
        let inner = Arc::clone(&self.inner);
        let spawned = std::thread::Builder::new()
            .name(inner.thread.into())
            .spawn(move || {
                loop {
                    inner.renew();
                    std::thread::sleep(interval);
                }
            });
        if let Err(err) = spawned {
            tracing::error!(thread = self.inner.thread, error = %err, "cannot start a background collection");
        }
    }
}

impl<T: Clone> Inner<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Stamped<T>>> {
        self.last.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn last(&self) -> Option<Stamped<T>> {
        self.lock().clone()
    }

    fn run(&self, previous: Option<&Stamped<T>>) -> Stamped<T> {
        let value = (self.work)(previous.map(|p| &p.value));
        Stamped {
            at: Instant::now(),
            value,
        }
    }

    /// A run off the lock (scrapes keep being served the old result while
    /// it lasts), its result then stored.
    fn renew(&self) {
        let previous = self.last();
        let next = self.run(previous.as_ref());
        *self.lock() = Some(next);
    }
}

/// "Nothing to read on this host" (no BMC, no apt, no NVMe): normal on many
/// hosts, so it is said once, at info level, and the collector reports
/// `success 0` quietly afterwards.
#[derive(Debug, Default)]
pub struct Absence(AtomicBool);

impl Absence {
    /// Logs `message` with its reason the first time only.
    pub fn note(&self, collector: &'static str, reason: &dyn Display, message: &str) {
        if !self.0.swap(true, Ordering::Relaxed) {
            tracing::info!(collector, reason = %reason, "{message}");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;

    use super::*;

    /// Work that counts its runs and returns the count, after `delay`.
    fn counting(delay: Duration) -> (Arc<AtomicU32>, impl Fn(Option<&u32>) -> u32) {
        let runs = Arc::new(AtomicU32::new(0));
        let counter = Arc::clone(&runs);
        let work = move |_: Option<&u32>| {
            std::thread::sleep(delay);
            counter.fetch_add(1, Ordering::SeqCst) + 1
        };
        (runs, work)
    }

    fn wait_until(what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "{what} did not happen");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_ttl_runs_at_the_first_scrape_then_serves_the_old_result_while_renewing() {
        let (runs, work) = counting(Duration::ZERO);
        let background = Background::new("test", Renewal::Ttl(Duration::from_millis(20)), work);
        assert_eq!(
            background.latest().unwrap().value,
            1,
            "first scrape runs it"
        );
        assert_eq!(background.latest().unwrap().value, 1, "fresh: no new run");
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        std::thread::sleep(Duration::from_millis(25));
        // Stale: the old result is served and a run starts behind it.
        assert_eq!(background.latest().unwrap().value, 1);
        wait_until("the background run", || {
            background.inner.last().unwrap().value == 2
        });
    }

    #[test]
    fn only_one_background_run_at_a_time() {
        let (runs, work) = counting(Duration::from_millis(50));
        let background = Background::new("test", Renewal::Ttl(Duration::from_nanos(1)), work);
        background.run_now();
        for _ in 0..20 {
            background.latest();
        }
        wait_until("the background run", || {
            !background.inner.running.load(Ordering::Acquire)
        });
        assert_eq!(runs.load(Ordering::SeqCst), 2, "one run_now, one renewal");
    }

    #[test]
    fn a_zero_ttl_runs_in_every_scrape() {
        let (runs, work) = counting(Duration::ZERO);
        let background = Background::new("test", Renewal::Ttl(Duration::ZERO), work);
        for expected in 1..=3 {
            assert_eq!(background.latest().unwrap().value, expected);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn an_interval_starts_its_thread_at_the_first_scrape_and_carries_the_previous_result() {
        let background = Background::new(
            "test",
            Renewal::Interval(Duration::from_millis(5)),
            |previous: Option<&Vec<u32>>| {
                let mut all = previous.cloned().unwrap_or_default();
                all.push(all.len() as u32);
                all
            },
        );
        std::thread::sleep(Duration::from_millis(20));
        assert!(background.inner.last().is_none(), "nothing before a scrape");
        background.latest();
        wait_until("three runs", || {
            background
                .latest()
                .is_some_and(|last| last.value.len() >= 3)
        });
        let last = background.latest().unwrap().value;
        assert_eq!(last[..3], [0, 1, 2], "each run saw the one before");
    }
}
