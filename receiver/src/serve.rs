//! The HTTP/1.1 server loop: a bounded number of connections, each closed
//! when its client is too slow to send a request head, idles too long
//! between requests, or stops reading an answer; and a shutdown that stops
//! accepting, lets in-flight requests finish, and gives up after a bound.
//!
//! Under a web configuration with TLS, each connection's handshake runs in
//! its own task, on the configuration in force when it was accepted (so a
//! renewed certificate serves the next connection), within the head
//! timeout. A client certificate verified against the configured client CA
//! reaches the handlers as a [`ClientCertificate`] extension.
//!
//! Timeouts are kept per connection from what its socket and its requests
//! do: a connection is in one of four phases (waiting for or reading a
//! request head, a request being handled, an answer being written, idle
//! between requests). Handling has no limit here: handlers bound their own
//! work (query timeout, long-poll timeout).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{Request, Response};
use dcmon_web::listener;
use dcmon_web::{WebConfig, WebConfigSource};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower_service::Service;

/// Connection limits and timeouts.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Most connections served at once; further ones wait in the kernel's
    /// accept queue until one closes.
    pub max_connections: usize,
    /// Longest a client may take to send a request head, from the accept
    /// or from the first byte after an idle spell.
    pub header_read_timeout: Duration,
    /// Longest a keep-alive connection may sit idle between requests, and
    /// longest an answer may wait for the client to read it.
    pub idle_timeout: Duration,
    /// Longest shutdown waits for in-flight requests before dropping them.
    pub shutdown_timeout: Duration,
}

/// Label set of a connection closed for being too slow.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TimeoutLabels {
    /// `header`, `idle` or `write`.
    pub phase: String,
}

/// Connection counts, registered by [`crate::metrics::Metrics`].
#[derive(Debug, Clone, Default)]
pub struct Counters {
    /// Connections open now.
    pub open: Gauge,
    /// Connections closed by a timeout, by phase.
    pub timed_out: Family<TimeoutLabels, Counter>,
}

/// Fired once when the process is asked to stop.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// Fires a [`Shutdown`].
#[derive(Debug)]
pub struct Trigger(watch::Sender<bool>);

/// A shutdown signal and what fires it.
pub fn shutdown_channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger(tx), Shutdown(rx))
}

impl Trigger {
    /// Tells every [`Shutdown`] that the process is stopping.
    pub fn fire(&self) {
        self.0.send_replace(true);
    }
}

impl Shutdown {
    /// Resolves once the shutdown has been fired (or its trigger dropped).
    pub async fn fired(&self) {
        let mut rx = self.0.clone();
        let _ = rx.wait_for(|stop| *stop).await;
    }
}

/// Serves `app` on `listener` until `shutdown` fires, then waits up to
/// `options.shutdown_timeout` for open connections to finish their requests
/// and drops the rest. Handlers see the peer as `ConnectInfo<SocketAddr>`.
/// `web` says whether connections speak TLS.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    options: Options,
    counters: Counters,
    shutdown: Shutdown,
    web: Arc<WebConfigSource>,
) {
    let slots = Arc::new(Semaphore::new(options.max_connections.max(1)));
    let mut connections = JoinSet::new();
    loop {
        // A slot first: while every slot is taken, new connections wait in
        // the accept queue, and are served as soon as a slow one times out.
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => slot.expect("the semaphore is never closed"),
            () = shutdown.fired() => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.fired() => break,
        };
        while connections.try_join_next().is_some() {}
        match accepted {
            Ok((stream, peer)) => {
                // Answers go out in pieces (TLS records, chunked bodies):
                // Nagle's algorithm would hold one back until the peer's
                // delayed ACK.
                let _ = stream.set_nodelay(true);
                connections.spawn(accepted_connection(
                    stream,
                    peer,
                    web.current(),
                    app.clone(),
                    options,
                    counters.clone(),
                    shutdown.clone(),
                    slot,
                ));
            }
            Err(err) => {
                // Out of descriptors or a connection reset before the
                // accept: pause rather than spin, and go on.
                tracing::warn!(error = %err, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(options.shutdown_timeout, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = connections.len(),
            timeout = ?options.shutdown_timeout,
            "requests still in flight after the shutdown timeout; dropping them"
        );
        connections.abort_all();
        while connections.join_next().await.is_some() {}
    }
}

/// The verified client certificate of a connection (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    /// SHA-256 fingerprint of the client's certificate.
    pub fingerprint: String,
}

/// Completes a connection's TLS handshake, if the web config asks for
/// one, then serves it.
#[allow(clippy::too_many_arguments)]
async fn accepted_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    web: Arc<WebConfig>,
    app: Router,
    options: Options,
    counters: Counters,
    shutdown: Shutdown,
    slot: OwnedSemaphorePermit,
) {
    counters.open.inc();
    let open = counters.open.clone();
    let _open = OnDrop(move || {
        open.dec();
    });
    let handshake = tokio::select! {
        stream = listener::handshake(tcp, &web, options.header_read_timeout) => stream,
        () = shutdown.fired() => return,
    };
    let stream = match handshake {
        Ok(stream) => stream,
        Err(err) => {
            // Scanners, plain HTTP on the TLS port, refused client
            // certificates: one debug line each.
            tracing::debug!(%peer, error = %err, "TLS handshake failed");
            return;
        }
    };
    let certificate = match (&web.tls, stream.peer_certificate()) {
        (Some(tls), Some(cert)) if tls.verifies_client_certs => Some(ClientCertificate {
            fingerprint: dcmon_web::fingerprint(cert),
        }),
        _ => None,
    };
    connection(
        stream,
        peer,
        certificate,
        app,
        options,
        shutdown,
        counters,
        slot,
    )
    .await;
}

/// Serves one connection until it closes, times out, or shutdown ends it.
#[allow(clippy::too_many_arguments)]
async fn connection<S>(
    stream: S,
    peer: SocketAddr,
    certificate: Option<ClientCertificate>,
    app: Router,
    options: Options,
    shutdown: Shutdown,
    counters: Counters,
    _slot: OwnedSemaphorePermit,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(TrackedIo {
        inner: stream,
        activity: Arc::clone(&activity),
    });
    let service = Handler {
        app,
        peer,
        certificate,
        activity: Arc::clone(&activity),
    };
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        // Our own head timeout starts at the first byte, not while idle.
        .header_read_timeout(None)
        .serve_connection(io, service);
    tokio::pin!(conn);
    let tick = (options.header_read_timeout.min(options.idle_timeout) / 4)
        .clamp(Duration::from_millis(10), Duration::from_secs(1));
    let mut stopping = false;
    loop {
        let now = Instant::now();
        let wake = activity
            .deadline(&options)
            .map_or(now + tick, |(at, _)| at.min(now + tick));
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(%peer, error = %err, "connection ended with an error");
                }
                return;
            }
            () = shutdown.fired(), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            () = tokio::time::sleep_until(wake) => {
                if let Some((at, phase)) = activity.deadline(&options)
                    && at <= Instant::now()
                {
                    tracing::debug!(%peer, phase, "closing a connection that timed out");
                    counters
                        .timed_out
                        .get_or_create(&TimeoutLabels { phase: phase.to_owned() })
                        .inc();
                    return;
                }
            }
        }
    }
}

/// Where a connection stands, for its timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for or reading a request head, since `since`.
    Head,
    /// Between requests, since `since`.
    Idle,
    /// Requests in flight; `responding` once every handler has answered.
    Busy { requests: usize, responding: bool },
}

#[derive(Debug)]
struct State {
    phase: Phase,
    since: Instant,
    last_write: Instant,
}

/// What a connection's socket and requests did last.
#[derive(Debug)]
struct Activity(Mutex<State>);

impl Activity {
    fn new() -> Self {
        let now = Instant::now();
        Activity(Mutex::new(State {
            phase: Phase::Head,
            since: now,
            last_write: now,
        }))
    }

    fn update<T>(&self, change: impl FnOnce(&mut State) -> T) -> T {
        // The state is a few plain fields: a panic elsewhere leaves it usable.
        change(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn read(&self) {
        self.update(|s| {
            if s.phase == Phase::Idle {
                s.phase = Phase::Head;
                s.since = Instant::now();
            }
        });
    }

    fn wrote(&self) {
        self.update(|s| s.last_write = Instant::now());
    }

    fn request_started(&self) {
        self.update(|s| {
            s.phase = match s.phase {
                Phase::Busy { requests, .. } => Phase::Busy {
                    requests: requests.saturating_add(1),
                    responding: false,
                },
                Phase::Head | Phase::Idle => Phase::Busy {
                    requests: 1,
                    responding: false,
                },
            };
        });
    }

    fn handler_answered(&self) {
        self.update(|s| {
            if let Phase::Busy { requests, .. } = s.phase {
                s.phase = Phase::Busy {
                    requests,
                    responding: true,
                };
                s.last_write = Instant::now();
            }
        });
    }

    fn response_done(&self) {
        self.update(|s| {
            if let Phase::Busy { requests, .. } = s.phase {
                if requests <= 1 {
                    s.phase = Phase::Idle;
                    s.since = Instant::now();
                } else {
                    s.phase = Phase::Busy {
                        requests: requests - 1,
                        responding: true,
                    };
                }
            }
        });
    }

    /// When the connection times out, and in which phase; none while a
    /// handler runs.
    fn deadline(&self, options: &Options) -> Option<(Instant, &'static str)> {
        self.update(|s| match s.phase {
            Phase::Head => Some((s.since + options.header_read_timeout, "header")),
            Phase::Idle => Some((s.since + options.idle_timeout, "idle")),
            Phase::Busy {
                responding: true, ..
            } => Some((s.last_write + options.idle_timeout, "write")),
            Phase::Busy {
                responding: false, ..
            } => None,
        })
    }
}

/// The socket, noting each read and write in the connection's activity.
#[derive(Debug)]
struct TrackedIo<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for TrackedIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.read();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for TrackedIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Hands each request to the router with the peer's address, and follows
/// it through to the end of its answer.
#[derive(Debug, Clone)]
struct Handler {
    app: Router,
    peer: SocketAddr,
    certificate: Option<ClientCertificate>,
    activity: Arc<Activity>,
}

type HandlerFuture =
    Pin<Box<dyn Future<Output = Result<Response<TrackedBody>, Infallible>> + Send>>;

impl hyper::service::Service<Request<Incoming>> for Handler {
    type Response = Response<TrackedBody>;
    type Error = Infallible;
    type Future = HandlerFuture;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        self.activity.request_started();
        // Counted done when the answer's body is finished or dropped,
        // whichever way the request ends.
        let done = RequestDone(Arc::clone(&self.activity));
        let mut request = request.map(Body::new);
        request.extensions_mut().insert(ConnectInfo(self.peer));
        if let Some(certificate) = &self.certificate {
            request.extensions_mut().insert(certificate.clone());
        }
        let mut app = self.app.clone();
        let activity = Arc::clone(&self.activity);
        Box::pin(async move {
            let response = match app.call(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            activity.handler_answered();
            Ok(response.map(|body| TrackedBody {
                inner: body,
                _done: done,
            }))
        })
    }
}

/// Marks the end of a request when dropped.
#[derive(Debug)]
struct RequestDone(Arc<Activity>);

impl Drop for RequestDone {
    fn drop(&mut self) {
        self.0.response_done();
    }
}

/// An answer's body, ending its request when hyper drops it.
#[derive(Debug)]
struct TrackedBody {
    inner: Body,
    _done: RequestDone,
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Runs a closure when dropped.
struct OnDrop<F: FnMut()>(F);

impl<F: FnMut()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        (self.0)();
    }
}
