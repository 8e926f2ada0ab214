//! The accept loop: a connection limit, HTTP/1.1 connections with their clocks, and
//! a graceful stop with a deadline.
//!
//! When the limit is reached, the keep-alive connection idle the longest is closed
//! to make room for the new one ([`super::idle`]): idle sockets, which a client
//! can keep forever by sending a request every `idle_timeout`, never lock the
//! others out. With no connection idle, the new connection is accepted and closed
//! at once (with a plain 503 if its socket takes it without waiting), rather than
//! left in the backlog or allowed to use up file descriptors.
//!
//! An `accept` that fails never ends the loop. Errors that concern one connection
//! (it was reset or aborted before it was accepted, a signal, a protocol error) are
//! retried at once; any other (out of descriptors or memory, or something
//! unexpected) waits 50 ms, doubling up to 1 s while it lasts, so that the loop
//! neither spins nor stops.
//!
//! A stop closes idle connections and lets those in flight finish, for at most
//! `shutdown_drain`; whatever is still open then is cut (its handler's future is
//! dropped) and counted in the log.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http_body::Body as _;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::idle::IdleConnections;
use super::watch::{ConnClock, ResponseBody, TimedBody, WatchedIo};
use super::EdgeLimits;

/// The first wait after `accept` failed with an error that may last.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(50);
/// The longest wait between two `accept`s that fail.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How long a new connection waits for the slot of the idle one evicted for it.
const EVICTION_WAIT: Duration = Duration::from_millis(500);
/// How long the cut connections have to let go of their slots after the drain.
const CUT_WAIT: Duration = Duration::from_secs(1);
/// At most one warning per this long about refused connections or accept errors.
const WARN_EVERY: Duration = Duration::from_secs(5);
/// `EPROTO` on Linux: a protocol error on one connection before it was accepted.
/// std has no `ErrorKind` for it, and the server does not depend on `libc`.
const EPROTO: i32 = 71;

/// The answer to a connection over the limit: written only if the socket takes it
/// at once, then the connection is closed.
const OVER_LIMIT: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: 91\r\nconnection: close\r\n\r\n{\"error\":{\"code\":\"too_many_connections\",\"message\":\"the server is at its connection limit\"}}";

/// What the connections are told to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Running,
    /// Finish the request in flight, if any, then close.
    Graceful,
    /// Close now: the drain deadline has passed.
    Cut,
}

/// Serves the router `current` holds at the time of each request, on `listener`,
/// until `stopped` resolves; then waits for the connections in flight to finish,
/// at most `limits.shutdown_drain`, and cuts the rest.
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
    let idle = Arc::new(IdleConnections::default());
    let (stop_tx, stop_rx) = watch::channel(Stop::Running);
    let mut warned = Warned::default();
    let mut backoff = AcceptBackoff::default();
    tokio::pin!(stopped);
    loop {
        let accepted = tokio::select! {
            () = &mut stopped => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _peer)) => {
                backoff.reset();
                let permit = match Arc::clone(&permits).try_acquire_owned() {
                    Ok(permit) => Some(permit),
                    Err(_) => make_room(&permits, &idle, &mut warned, max).await,
                };
                match permit {
                    Some(permit) => {
                        let connection = Connection {
                            current: Arc::clone(&current),
                            limits,
                            idle: Arc::clone(&idle),
                            stop: stop_rx.clone(),
                            _permit: permit,
                        };
                        tokio::spawn(connection.run(stream));
                    }
                    None => refuse(stream),
                }
            }
            Err(error) => {
                let wait = backoff.after(&error);
                if due(&mut warned.accept) {
                    tracing::warn!(%error, ?wait, "accept failed; the server goes on");
                }
                if let Some(wait) = wait {
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(Stop::Graceful);
    let drained = tokio::time::timeout(limits.shutdown_drain, permits.acquire_many(max)).await;
    if drained.is_err() {
        let cut = (max as usize).saturating_sub(permits.available_permits());
        let _ = stop_tx.send(Stop::Cut);
        tracing::warn!(
            cut,
            drain = ?limits.shutdown_drain,
            "stopping: cut the connections still open after the drain deadline"
        );
        // A cut connection ends at its task's next poll; one whose handler blocks
        // its thread cannot be cut, and is not waited for past this.
        let _ = tokio::time::timeout(CUT_WAIT, permits.acquire_many(max)).await;
    }
    Ok(())
}

/// At the limit: evicts the connection idle the longest and waits for its slot.
/// `None` when no connection is idle (or the evicted one did not let go in time).
async fn make_room(
    permits: &Arc<Semaphore>,
    idle: &IdleConnections,
    warned: &mut Warned,
    max: u32,
) -> Option<OwnedSemaphorePermit> {
    if !idle.evict_oldest() {
        if due(&mut warned.refused) {
            tracing::warn!(
                max_connections = max,
                "connection limit reached and no connection is idle: refusing new connections"
            );
        }
        return None;
    }
    if due(&mut warned.evicted) {
        tracing::warn!(
            max_connections = max,
            "connection limit reached: closing the oldest idle connections to make room"
        );
    }
    // The evicted connection holds no request: its task ends at its next poll.
    match tokio::time::timeout(EVICTION_WAIT, Arc::clone(permits).acquire_owned()).await {
        Ok(Ok(permit)) => Some(permit),
        Ok(Err(_)) | Err(_) => None,
    }
}

/// Answers 503 if the socket takes it without waiting, and closes the connection.
fn refuse(stream: TcpStream) {
    let _ = stream.try_write(OVER_LIMIT);
    drop(stream);
}

/// `accept` failed for one connection only (reset or aborted before it was
/// accepted, a signal, a protocol error on it): the next `accept` may work at once.
fn concerns_one_connection(error: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        error.kind(),
        ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::Interrupted
    ) || error.raw_os_error() == Some(EPROTO)
}

/// The wait after failed `accept`s: none for an error of one connection; 50 ms
/// for any other, doubling up to 1 s while they go on.
#[derive(Debug, Default)]
struct AcceptBackoff {
    next: Option<Duration>,
}

impl AcceptBackoff {
    fn after(&mut self, error: &std::io::Error) -> Option<Duration> {
        if concerns_one_connection(error) {
            return None;
        }
        let wait = self.next.unwrap_or(ACCEPT_BACKOFF_MIN);
        self.next = Some(wait.saturating_mul(2).min(ACCEPT_BACKOFF_MAX));
        Some(wait)
    }

    fn reset(&mut self) {
        self.next = None;
    }
}

/// When each kind of warning was last logged.
#[derive(Debug, Default)]
struct Warned {
    refused: Option<Instant>,
    evicted: Option<Instant>,
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
    idle: Arc<IdleConnections>,
    stop: watch::Receiver<Stop>,
    _permit: OwnedSemaphorePermit,
}

impl Connection {
    async fn run(mut self, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let clock = Arc::new(ConnClock::registered(
            self.limits.header_read_timeout,
            self.limits.idle_timeout,
            Arc::clone(&self.idle),
        ));
        let eviction = Arc::clone(clock.eviction());
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
        let mut evicted = false;
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
                () = eviction.wait(), if !evicted => {
                    evicted = true;
                    // Evicted while idle; a request that began since is let finish.
                    if clock.is_quiet() {
                        tracing::debug!("closing an idle connection to make room");
                        return;
                    }
                    connection.as_mut().graceful_shutdown();
                }
                changed = self.stop.changed() => {
                    let stop = match changed {
                        Ok(()) => *self.stop.borrow_and_update(),
                        // The accept loop is gone: nothing waits for this any more.
                        Err(_) => Stop::Cut,
                    };
                    match stop {
                        Stop::Running => {}
                        Stop::Graceful => {
                            if !stopping {
                                stopping = true;
                                connection.as_mut().graceful_shutdown();
                            }
                        }
                        Stop::Cut => return,
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
        let in_flight = self.clock.start_request(!request.body().is_end_stream());
        let clock = Arc::clone(&self.clock);
        let limit = self.body_read_timeout;
        let request =
            request.map(|body| axum::body::Body::new(TimedBody::on_connection(body, limit, clock)));
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
    fn errors_of_one_connection_are_retried_at_once_others_back_off() {
        use std::io::{Error, ErrorKind};
        let mut backoff = AcceptBackoff::default();
        for kind in [
            ErrorKind::ConnectionAborted,
            ErrorKind::ConnectionReset,
            ErrorKind::Interrupted,
        ] {
            assert_eq!(backoff.after(&Error::from(kind)), None, "{kind:?}");
        }
        assert_eq!(backoff.after(&Error::from_raw_os_error(EPROTO)), None);
        // EMFILE, then something unexpected: 50 ms doubling up to 1 s.
        let waits: Vec<_> = [24, 24, 22, 24, 24, 24, 24]
            .into_iter()
            .map(|errno| backoff.after(&Error::from_raw_os_error(errno)))
            .collect();
        let ms = |ms| Some(Duration::from_millis(ms));
        assert_eq!(
            waits,
            [
                ms(50),
                ms(100),
                ms(200),
                ms(400),
                ms(800),
                ms(1000),
                ms(1000)
            ]
        );
        assert_eq!(backoff.after(&Error::from(ErrorKind::Other)), ms(1000));
        backoff.reset();
        assert_eq!(backoff.after(&Error::from(ErrorKind::OutOfMemory)), ms(50));
    }
}
