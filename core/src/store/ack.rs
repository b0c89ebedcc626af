//! Acknowledged writes: with `--ack-replicas N`, a state change is answered only once `WAIT`
//! on the connection that made it says N replicas have it (REDIS-HA.md: WAIT counts only its
//! own connection's writes, so the call and its WAIT travel in one pipeline).
//!
//! Group commit: WAIT blocks its connection for a replication round trip, so one WAIT per
//! call would serialise every write behind one. Instead a few *lanes* each own a connection;
//! a free lane takes every call queued (up to the batch bound), sends them and one WAIT in one
//! pipeline, and answers each call with its own reply and the one verdict of that WAIT. While
//! a lane waits, the next calls queue for the next free lane.
//!
//! A WAIT that falls short rolls nothing back: the outcome is unknown (the write may survive a
//! failover or not), so the caller answers 503 with the reservation id, and an idempotent retry
//! resolves it. A connection that breaks mid-batch fails every call of the batch the same way.

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::Value;
use redis::aio::MultiplexedConnection;
use tokio::sync::{Mutex, mpsc, oneshot};

use super::StoreError;
use super::connection::{Connector, REDIS_RESPONSE_TIMEOUT_MS, breaks_connection};
use crate::shutdown::Shutdown;

/// Connections (lanes) that wait for replicas at once, by default (`--ack-lanes`). Fewer lanes
/// make bigger batches (fewer WAITs), more lanes overlap more WAITs; on the bench machine
/// neither 2 nor 4 won consistently (BENCHMARKS.md, "Acknowledgements").
pub const ACK_LANES: usize = 4;
/// The most lanes `--ack-lanes` may ask for.
pub const ACK_LANES_MAX: usize = 16;
/// Calls one lane sends with one WAIT at most: bounds a pipeline's size and the work one slow
/// WAIT delays.
pub const ACK_BATCH_MAX: usize = 64;
/// Calls queued for the lanes before callers wait (the HTTP timeout bounds that wait).
pub const ACK_QUEUE_MAX: usize = 4_096;
/// The longest `--ack-timeout-ms`: far below the request timeout.
pub const ACK_TIMEOUT_MS_MAX: u64 = 5_000;

/// How writes are acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckSettings {
    /// Replicas that must have a write before it is acknowledged (0: no WAIT at all).
    pub replicas: u32,
    /// How long one WAIT may wait for them.
    pub timeout_ms: u64,
    /// Calls per WAIT at most (1: one WAIT per call, no group commit).
    pub batch_max: usize,
    /// Lanes (connections) waiting at once.
    pub lanes: usize,
}

impl Default for AckSettings {
    fn default() -> Self {
        Self { replicas: 0, timeout_ms: 1_000, batch_max: ACK_BATCH_MAX, lanes: ACK_LANES }
    }
}

/// A call's reply and whether the replicas confirmed it.
pub type AckedReply = (Vec<Value>, bool);

struct Job {
    command: redis::Cmd,
    answer: oneshot::Sender<Result<AckedReply, StoreError>>,
}

/// The lanes. Cheap to clone.
#[derive(Clone)]
pub struct AckedWriter {
    queue: mpsc::Sender<Job>,
    settings: AckSettings,
}

impl std::fmt::Debug for AckedWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AckedWriter").field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl AckedWriter {
    /// Starts the lanes (inside a tokio runtime); they stop when `shutdown` fires.
    pub fn start(connector: Connector, settings: AckSettings, shutdown: Shutdown) -> Self {
        assert!(settings.replicas > 0, "no lanes are needed without replicas to wait for");
        assert!((1..=ACK_BATCH_MAX).contains(&settings.batch_max), "the caller bounds the batch");
        assert!((1..=ACK_LANES_MAX).contains(&settings.lanes), "the caller bounds the lanes");
        let (queue, receiver) = mpsc::channel(ACK_QUEUE_MAX);
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..settings.lanes {
            tokio::spawn(lane(connector.clone(), Arc::clone(&receiver), settings, shutdown.clone()));
        }
        Self { queue, settings }
    }

    /// The settings.
    pub fn settings(&self) -> AckSettings {
        self.settings
    }

    /// Runs `command` on a lane, with a WAIT after it.
    pub async fn call(&self, command: redis::Cmd) -> Result<AckedReply, StoreError> {
        let (answer, answered) = oneshot::channel();
        self.queue
            .send(Job { command, answer })
            .await
            .map_err(|_| StoreError::Unavailable("the coordinator is shutting down".into()))?;
        answered.await.unwrap_or_else(|_| Err(StoreError::Unavailable("the coordinator is shutting down".into())))
    }
}

async fn lane(
    connector: Connector,
    queue: Arc<Mutex<mpsc::Receiver<Job>>>,
    settings: AckSettings,
    mut shutdown: Shutdown,
) {
    let mut connection: Option<(u64, MultiplexedConnection)> = None;
    // The WAIT may take its whole timeout on top of the calls themselves.
    let response_timeout = Duration::from_millis(REDIS_RESPONSE_TIMEOUT_MS + settings.timeout_ms);
    loop {
        let batch = {
            let mut queue = queue.lock().await;
            let first = tokio::select! {
                _ = shutdown.wait() => return,
                first = queue.recv() => first,
            };
            let Some(first) = first else { return };
            let mut batch = vec![first];
            while batch.len() < settings.batch_max {
                match queue.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            batch
        };
        if connection.as_ref().is_some_and(|(epoch, _)| *epoch != connector.epoch()) {
            connection = None;
        }
        if connection.is_none() {
            match connector.open(Some(response_timeout)).await {
                Ok(opened) => connection = Some(opened),
                Err(error) => {
                    for job in batch {
                        let _ = job.answer.send(Err(error.clone()));
                    }
                    continue;
                }
            }
        }
        let Some((_, current)) = connection.as_mut() else { continue };
        let mut pipe = redis::pipe();
        let mut answers = Vec::with_capacity(batch.len());
        for job in batch {
            pipe.add_command(job.command);
            answers.push(job.answer);
        }
        pipe.cmd("WAIT").arg(settings.replicas).arg(settings.timeout_ms);
        pipe.ignore_errors();
        metrics::histogram!("allot_ack_batch_size").record(answers.len() as f64);
        let started = Instant::now();
        let results: Result<Vec<redis::RedisResult<Value>>, redis::RedisError> = pipe.query_async(current).await;
        metrics::histogram!("allot_ack_wait_seconds").record(started.elapsed().as_secs_f64());
        match results {
            Err(error) => {
                if breaks_connection(&error) {
                    connection = None;
                }
                let error = StoreError::from(error);
                for answer in answers {
                    let _ = answer.send(Err(error.clone()));
                }
            }
            Ok(mut results) => {
                let confirmed = match results.pop() {
                    Some(Ok(Value::Int(replicas))) => replicas,
                    _ => 0,
                };
                let acknowledged = confirmed >= i64::from(settings.replicas);
                if !acknowledged {
                    metrics::counter!("allot_ack_short_total").increment(answers.len() as u64);
                    tracing::warn!(
                        confirmed,
                        wanted = settings.replicas,
                        calls = answers.len(),
                        "WAIT fell short: answering these changes as unknown"
                    );
                }
                for (answer, result) in answers.into_iter().zip(results) {
                    let reply = match result {
                        Ok(Value::Array(values)) => Ok((values, acknowledged)),
                        Ok(other) => Err(StoreError::Corrupt(format!("function reply {other:?}"))),
                        Err(error) => {
                            if breaks_connection(&error) {
                                connection = None;
                            }
                            Err(StoreError::from(error))
                        }
                    };
                    let _ = answer.send(reply);
                }
            }
        }
    }
}
