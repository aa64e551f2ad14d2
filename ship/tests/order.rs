//! A worker sends a spooled backlog before a fresh batch that is already
//! waiting: an endpoint such as Prometheus refuses (400, never retried) a
//! sample older than the newest of its series, so newer data must never
//! overtake older data. A real spool on disk, a real HTTP endpoint on
//! loopback that records the order of the bodies it is sent.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use dcmon_protocol::remote_write::{SeriesSamples, Version};
use dcmon_ship::batch::Batch;
use dcmon_ship::endpoint::{Endpoint, EndpointAuth, EndpointConfig};
use dcmon_ship::message::{Negotiation, ProtobufMessage};
use dcmon_ship::metrics::EndpointMetrics;
use dcmon_ship::retry::Backoff;
use dcmon_ship::spool::{Spool, SpoolLimits};
use dcmon_ship::worker::{SpoolHandle, Worker};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

/// One sample of one series at `tick_ms`, as the batch of that tick.
fn batch(tick_ms: i64) -> Batch {
    let series = [SeriesSamples {
        labels: vec![("__name__".into(), "up".into()), ("job".into(), "t".into())],
        samples: vec![(tick_ms, 1.0)],
    }];
    Batch::encode(&series, &[], tick_ms, Version::V1)
}

/// Answers every request 204 and records its body, in arrival order.
async fn serve(listener: TcpListener, bodies: Arc<Mutex<Vec<Vec<u8>>>>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            return;
        };
        let bodies = Arc::clone(&bodies);
        tokio::spawn(async move {
            let mut buffer = Vec::new();
            let mut chunk = [0u8; 8192];
            loop {
                // One request at a time on a connection: headers, then
                // Content-Length bytes of body.
                let head_end = loop {
                    if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                        break at + 4;
                    }
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                    }
                };
                let head = String::from_utf8_lossy(&buffer[..head_end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                while buffer.len() < head_end + length {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                    }
                }
                let body = buffer[head_end..head_end + length].to_vec();
                buffer.drain(..head_end + length);
                bodies.lock().unwrap().push(body);
                let answer = b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n";
                if stream.write_all(answer).await.is_err() {
                    return;
                }
            }
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spooled_backlog_goes_out_before_a_fresh_batch_already_waiting() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/api/v1/write", listener.local_addr().unwrap());
    let bodies = Arc::new(Mutex::new(Vec::new()));
    tokio::spawn(serve(listener, Arc::clone(&bodies)));

    // A backlog of three ticks on disk (an outage's, say) ...
    let dir = tempfile::tempdir().unwrap();
    let limits = SpoolLimits {
        max_bytes: 1 << 20,
        max_age: Duration::from_secs(86_400 * 365 * 100),
    };
    let (mut spool, _) = Spool::open(dir.path(), limits).unwrap();
    let ticks = [1_000, 2_000, 3_000, 4_000];
    for &tick in &ticks[..3] {
        spool.push(&batch(tick), tick).unwrap();
    }
    // ... and a fresh batch, newer than all of it, already in the channel
    // when the worker starts.
    let (fresh_tx, fresh_rx) = mpsc::channel(8);
    fresh_tx.send(Arc::new(batch(ticks[3]))).await.unwrap();

    let negotiation = Arc::new(Negotiation::new(ProtobufMessage::V1));
    let metrics = Arc::new(EndpointMetrics::new(url.clone(), Arc::clone(&negotiation)));
    let config = EndpointConfig::new(url.clone(), EndpointAuth::None);
    let (stop_tx, stop_rx) = watch::channel(false);
    let worker = Worker {
        endpoint: Endpoint::new(config, Duration::from_secs(10), "dcmon-ship test").unwrap(),
        spool: SpoolHandle::new(spool, Arc::clone(&metrics), url),
        metrics,
        negotiation,
        fresh: fresh_rx,
        shutdown: stop_rx,
        backoff: Backoff::new(Duration::from_millis(50), Duration::from_millis(200)),
    };
    let running = tokio::spawn(worker.run());

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while bodies.lock().unwrap().len() < ticks.len() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {} batches arrived",
            bodies.lock().unwrap().len(),
            ticks.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop_tx.send(true).unwrap();
    drop(fresh_tx);
    running.await.unwrap();

    let arrived: Vec<i64> = bodies
        .lock()
        .unwrap()
        .iter()
        .map(|body| {
            let tick = ticks.iter().find(|&&t| batch(t).body == *body);
            *tick.expect("a body the test sent")
        })
        .collect();
    assert_eq!(arrived, ticks, "sent out of time order");
}
