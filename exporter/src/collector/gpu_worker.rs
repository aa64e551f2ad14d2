//! NVML calls on a thread of their own, waited for up to a deadline.
//!
//! A sick driver can leave an NVML call blocked in the kernel for minutes
//! or forever. The collector must still answer within the collector
//! timeout, and the rest of the scrape (and the shipper's ticks) must not
//! queue behind it. So the source lives on one dedicated worker thread;
//! [`NvmlWorker::call`] hands it a request and waits at most the deadline.
//! A call still running past it makes NVML *unresponsive*: no new request
//! is queued behind the stuck one, each later call answers at once, and one
//! warning is logged. When the stuck call returns, the worker logs that
//! NVML answered again and the next call reads afresh.
//!
//! The source is built on the worker as well, so loading NVML (which can
//! hang just the same) never holds up the exporter's start.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::gpu_source::{DriverInfo, GpuReading, GpuSource, GpuSourceError};

/// What one NVML read returns.
pub type Answer = Result<(DriverInfo, Vec<GpuReading>), GpuSourceError>;

/// The outcome of one [`NvmlWorker::call`].
#[derive(Debug)]
pub enum Call {
    /// NVML answered within the deadline (an error is an answer too).
    Answered(Answer),
    /// A call has been running since this instant and has not returned.
    Unresponsive {
        /// When the stuck call started.
        since: Instant,
    },
}

/// What the caller and the worker share.
#[derive(Debug, Default)]
struct InFlight {
    /// When the running call started; `None` while the worker is idle.
    since: Option<Instant>,
    /// Whether the running call has outlived its deadline (and the
    /// warning has been logged).
    late: bool,
}

/// The worker thread and the way to it.
#[derive(Debug)]
pub struct NvmlWorker {
    requests: Mutex<mpsc::Sender<mpsc::SyncSender<Answer>>>,
    in_flight: Arc<Mutex<InFlight>>,
    deadline: Duration,
}

impl NvmlWorker {
    /// Starts the worker; it builds its source with `make` before taking
    /// the first request.
    pub fn spawn<F>(make: F, deadline: Duration) -> Self
    where
        F: FnOnce() -> Box<dyn GpuSource> + Send + 'static,
    {
        let (requests, incoming) = mpsc::channel::<mpsc::SyncSender<Answer>>();
        let in_flight = Arc::new(Mutex::new(InFlight::default()));
        let shared = Arc::clone(&in_flight);
        let spawned = std::thread::Builder::new()
            .name("dcmon-nvml".into())
            .spawn(move || {
                let source = make();
                for reply in incoming {
                    let answer = read(&*source);
                    // Idle again before the answer goes out, so a call
                    // made right after this one's reply is not refused.
                    let stuck = {
                        let mut state = shared.lock().unwrap_or_else(|e| e.into_inner());
                        let stuck = state.late.then(|| state.since.map(|s| s.elapsed()));
                        *state = InFlight::default();
                        stuck.flatten()
                    };
                    if let Some(took) = stuck {
                        tracing::warn!(
                            collector = super::gpu::NAME,
                            took = ?took,
                            "NVML answered again"
                        );
                    }
                    // The caller may have stopped waiting; that is fine.
                    let _ = reply.send(answer);
                }
            });
        if let Err(err) = spawned {
            // Without the thread every call reports NVML failed.
            tracing::error!(collector = super::gpu::NAME, error = %err, "cannot start the NVML thread");
        }
        Self {
            requests: Mutex::new(requests),
            in_flight,
            deadline,
        }
    }

    /// How long a call is waited for.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// Reads the driver and every GPU on the worker, waiting at most the
    /// deadline.
    pub fn call(&self) -> Call {
        let since = {
            let mut state = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(since) = state.since {
                return Call::Unresponsive { since };
            }
            let now = Instant::now();
            state.since = Some(now);
            now
        };
        let (reply, answer) = mpsc::sync_channel(1);
        let sent = self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(reply);
        if sent.is_err() {
            self.in_flight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .since = None;
            return Call::Answered(Err(GpuSourceError::Failed(
                "the NVML thread is not running".into(),
            )));
        }
        match answer.recv_timeout(self.deadline) {
            Ok(answer) => Call::Answered(answer),
            Err(RecvTimeoutError::Timeout) => {
                let mut state = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
                if state.since != Some(since) {
                    // The call returned just after the wait ended: its
                    // answer is on its way (the worker is idle again
                    // before it sends).
                    drop(state);
                    return match answer.recv() {
                        Ok(answer) => Call::Answered(answer),
                        Err(_) => Call::Answered(Err(GpuSourceError::Failed(
                            "the NVML thread ended".into(),
                        ))),
                    };
                }
                if !state.late {
                    state.late = true;
                    tracing::error!(
                        collector = super::gpu::NAME,
                        deadline = ?self.deadline,
                        "an NVML call has not returned within the deadline; GPUs report unresponsive until it does"
                    );
                }
                Call::Unresponsive { since }
            }
            Err(RecvTimeoutError::Disconnected) => {
                self.in_flight
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .since = None;
                Call::Answered(Err(GpuSourceError::Failed("the NVML thread ended".into())))
            }
        }
    }
}

/// One read, with a panic in the source turned into an error so the worker
/// keeps serving.
fn read(source: &dyn GpuSource) -> Answer {
    std::panic::catch_unwind(AssertUnwindSafe(|| {
        let driver = source.driver()?;
        Ok((driver, source.read()?))
    }))
    .unwrap_or_else(|_| Err(GpuSourceError::Failed("the GPU source panicked".into())))
}
