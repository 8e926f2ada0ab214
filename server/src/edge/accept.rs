//! The accept loop: a connection limit, HTTP/1.1 connections with their clocks, and
//! a graceful stop.
//!
//! When the limit is reached, a new connection is accepted and closed at once (with
//! a plain 503 if its socket takes it without waiting), rather than left in the
//! backlog or allowed to use up file descriptors. An `accept` that fails never ends
//! the loop: on `EMFILE`, `ENFILE`, `ENOBUFS` or `ENOMEM` it waits a little before
//! the next try, so that it neither spins nor stops.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::watch::{ConnClock, ResponseBody, TimedBody, WatchedIo};
use super::EdgeLimits;

/// How long the loop waits after `accept` failed for lack of resources.
const RESOURCE_BACKOFF: Duration = Duration::from_millis(50);
/// At most one warning per this long about refused connections or accept errors.
const WARN_EVERY: Duration = Duration::from_secs(5);

/// The answer to a connection over the limit: written only if the socket takes it
/// at once, then the connection is closed.
const OVER_LIMIT: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: 91\r\nconnection: close\r\n\r\n{\"error\":{\"code\":\"too_many_connections\",\"message\":\"the server is at its connection limit\"}}";

/// Serves the router `current` holds at the time of each request, on `listener`,
/// until `stopped` resolves; then waits for the connections in flight to finish.
pub async fn serve(
    listener: TcpListener,
    current: Arc<ArcSwap<axum::Router>>,
    limits: EdgeLimits,
    stopped: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // INVARIANT: every served connection holds one permit until its task ends, so
    // acquiring them all at the end waits for every connection.
    let max = u32::try_from(limits.max_connections)
        .unwrap_or(u32::MAX)
        .min(u32::try_from(Semaphore::MAX_PERMITS).unwrap_or(u32::MAX));
    let permits = Arc::new(Semaphore::new(max as usize));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut warned = Warned::default();
    tokio::pin!(stopped);
    loop {
        let accepted = tokio::select! {
            () = &mut stopped => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _peer)) => match Arc::clone(&permits).try_acquire_owned() {
                Ok(permit) => {
                    let connection = Connection {
                        current: Arc::clone(&current),
                        limits,
                        stop: stop_rx.clone(),
                        _permit: permit,
                    };
                    tokio::spawn(connection.run(stream));
                }
                Err(_) => {
                    if due(&mut warned.refused) {
                        tracing::warn!(
                            max_connections = max,
                            "connection limit reached: refusing new connections"
                        );
                    }
                    refuse(stream);
                }
            },
            Err(error) => {
                let resources = is_out_of_resources(&error);
                if due(&mut warned.accept) {
                    tracing::warn!(%error, "accept failed; the server goes on");
                }
                if resources {
                    tokio::time::sleep(RESOURCE_BACKOFF).await;
                }
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let _all_closed = permits.acquire_many(max).await;
    Ok(())
}

/// Answers 503 if the socket takes it without waiting, and closes the connection.
fn refuse(stream: TcpStream) {
    let _ = stream.try_write(OVER_LIMIT);
    drop(stream);
}

/// `accept` failed because the process or the system ran out of something that
/// comes back when connections close: wait before trying again.
fn is_out_of_resources(error: &std::io::Error) -> bool {
    // EMFILE 24, ENFILE 23, ENOBUFS 105, ENOMEM 12 on Linux; other errors (a
    // connection reset before it was accepted) concern one connection only.
    matches!(error.raw_os_error(), Some(23 | 24 | 105 | 12))
        || error.kind() == std::io::ErrorKind::OutOfMemory
}

/// When each kind of warning was last logged.
#[derive(Debug, Default)]
struct Warned {
    refused: Option<Instant>,
    accept: Option<Instant>,
}

/// Whether a warning last logged at `last` is due again; marks it logged.
fn due(last: &mut Option<Instant>) -> bool {
    let now = Instant::now();
    if last.is_some_and(|at| now.duration_since(at) < WARN_EVERY) {
        return false;
    }
    *last = Some(now);
    true
}

/// One accepted connection.
struct Connection {
    current: Arc<ArcSwap<axum::Router>>,
    limits: EdgeLimits,
    stop: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
}

impl Connection {
    async fn run(mut self, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let clock = Arc::new(ConnClock::new(
            self.limits.header_read_timeout,
            self.limits.idle_timeout,
        ));
        let io = TokioIo::new(WatchedIo::new(stream, Arc::clone(&clock)));
        let service = Service {
            current: Arc::clone(&self.current),
            clock: Arc::clone(&clock),
            body_read_timeout: self.limits.body_read_timeout,
        };
        let mut builder = hyper::server::conn::http1::Builder::new();
        // hyper's head timeout would also end idle keep-alive connections at the
        // head deadline; the clock keeps both deadlines instead.
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(None)
            .keep_alive(true);
        let connection = builder.serve_connection(io, service);
        tokio::pin!(connection);
        let mut stopping = false;
        loop {
            let (phase, deadline) = clock.now();
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(%error, "connection ended with an error");
                    }
                    return;
                }
                () = sleep_until(deadline) => {
                    if clock.now() == (phase, deadline) {
                        tracing::debug!(phase = phase.name(), "closing a connection past its deadline");
                        return;
                    }
                }
                () = clock.changed() => {}
                changed = self.stop.changed(), if !stopping => {
                    stopping = true;
                    if changed.is_ok() {
                        connection.as_mut().graceful_shutdown();
                    }
                }
            }
        }
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The service of one connection: times the body, tells the clock when a request
/// starts and ends, and hands the request to the current router.
#[derive(Clone)]
struct Service {
    current: Arc<ArcSwap<axum::Router>>,
    clock: Arc<ConnClock>,
    body_read_timeout: Duration,
}

type Answer = hyper::Response<ResponseBody<axum::body::Body>>;

impl hyper::service::Service<hyper::Request<Incoming>> for Service {
    type Response = Answer;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Answer, Infallible>> + Send>>;

    fn call(&self, request: hyper::Request<Incoming>) -> Self::Future {
        let in_flight = self.clock.start_request();
        let request =
            request.map(|body| axum::body::Body::new(TimedBody::new(body, self.body_read_timeout)));
        let router = self.current.load_full();
        Box::pin(async move {
            use tower::ServiceExt as _;
            let response = match (*router).clone().oneshot(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            in_flight.answered();
            Ok(response.map(|body| ResponseBody::new(body, in_flight)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_over_limit_answer_is_well_formed() {
        let text = std::str::from_utf8(OVER_LIMIT).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let value: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(value["error"]["code"], "too_many_connections");
    }

    #[test]
    fn running_out_of_descriptors_backs_off() {
        for errno in [23, 24, 105, 12] {
            assert!(is_out_of_resources(&std::io::Error::from_raw_os_error(
                errno
            )));
        }
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionAborted);
        assert!(!is_out_of_resources(&reset));
    }
}
