//! The clocks of one connection: how long it may take to send a request head, to
//! wait idle for its next request, and to send a body.
//!
//! A connection is in one of four phases. [`ConnClock`] holds the phase and its
//! deadline; the connection task in [`super::accept`] closes the connection when the
//! deadline passes.
//!
//! | phase | from | deadline |
//! | --- | --- | --- |
//! | head | accept, or the first byte after idle | `header_read_timeout` |
//! | busy | the head is parsed (the service is called) | none (the body has its own) |
//! | responding | the handler answered | `idle_timeout` (a client that reads nothing) |
//! | idle | the response body is done | `idle_timeout` |
//!
//! When bytes of a next request arrive while one is being served (after its body),
//! the connection goes from responding to head, not to idle. While idle a
//! connection is in the register of [`super::idle`], from which the accept loop may
//! evict it at the connection limit.
//!
//! A head sent one line every few seconds (slowloris) is cut at the head deadline
//! however often it sends; an idle keep-alive connection at the idle one. The body
//! deadline is kept by [`TimedBody`], so a stalled body fails the request (408) and
//! the connection closes with its answer.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

use super::idle::{Eviction, IdleConnections, IdleKey};

/// Where a connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Reading a request head.
    Head,
    /// A request is being served (its body has its own deadline).
    Busy,
    /// The handler has answered; the answer is being written.
    Responding,
    /// Waiting for the next request on a keep-alive connection.
    Idle,
}

impl Phase {
    /// The phase's name, for the log.
    pub fn name(self) -> &'static str {
        match self {
            Self::Head => "head",
            Self::Busy => "busy",
            Self::Responding => "responding",
            Self::Idle => "idle",
        }
    }
}

#[derive(Debug)]
struct ClockState {
    phase: Phase,
    deadline: Option<Instant>,
    /// Requests whose answer is not finished (one at a time over HTTP/1.1).
    in_flight: u32,
    /// The body of the request being served has been read to its end (or it has
    /// none): bytes read from here on belong to the next request.
    body_done: bool,
    /// Bytes of a next request arrived while this one was served (pipelining):
    /// when it finishes, the connection is reading a head, not idle.
    next_head: bool,
    /// Where the connection stands in the register of idle connections.
    idle_key: Option<IdleKey>,
}

/// The phase and deadline of one connection.
#[derive(Debug)]
pub struct ConnClock {
    state: Mutex<ClockState>,
    /// Set while a read may move the phase (idle, or bytes of a next request), so
    /// that most reads do not take the lock.
    watch_reads: AtomicBool,
    changed: Notify,
    header_read_timeout: Duration,
    idle_timeout: Duration,
    /// The register this connection enters while idle, and how it is told it was
    /// evicted from there.
    idle: Option<Arc<IdleConnections>>,
    eviction: Arc<Eviction>,
}

impl ConnClock {
    /// A new connection: it has `header_read_timeout` to send its first head.
    pub fn new(header_read_timeout: Duration, idle_timeout: Duration) -> Self {
        Self {
            state: Mutex::new(ClockState {
                phase: Phase::Head,
                deadline: Some(Instant::now() + header_read_timeout),
                in_flight: 0,
                body_done: false,
                next_head: false,
                idle_key: None,
            }),
            watch_reads: AtomicBool::new(false),
            changed: Notify::new(),
            header_read_timeout,
            idle_timeout,
            idle: None,
            eviction: Arc::new(Eviction::default()),
        }
    }

    /// A new connection that enters `idle` whenever it waits for its next request.
    pub fn registered(
        header_read_timeout: Duration,
        idle_timeout: Duration,
        idle: Arc<IdleConnections>,
    ) -> Self {
        let mut clock = Self::new(header_read_timeout, idle_timeout);
        clock.idle = Some(idle);
        clock
    }

    fn lock(&self) -> MutexGuard<'_, ClockState> {
        // Every change is a few assignments: a panic cannot leave it half done.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set(&self, state: &mut ClockState, phase: Phase, deadline: Option<Instant>) {
        if let (Some(key), Some(idle)) = (state.idle_key.take(), &self.idle) {
            idle.leave(key);
        }
        state.phase = phase;
        state.deadline = deadline;
        if phase == Phase::Idle {
            if let Some(idle) = &self.idle {
                state.idle_key = Some(idle.enter(Instant::now(), &self.eviction));
            }
        }
        self.refresh_watch(state);
        self.changed.notify_one();
    }

    fn refresh_watch(&self, state: &ClockState) {
        let watch = match state.phase {
            Phase::Idle | Phase::Responding => true,
            Phase::Busy => state.body_done,
            Phase::Head => false,
        };
        self.watch_reads.store(watch, Ordering::Release);
    }

    /// The current phase and its deadline.
    pub fn now(&self) -> (Phase, Option<Instant>) {
        let state = self.lock();
        (state.phase, state.deadline)
    }

    /// Whether no request is being served (a head may be half read).
    pub fn is_quiet(&self) -> bool {
        self.lock().in_flight == 0
    }

    /// How this connection learns that it was evicted while idle.
    pub fn eviction(&self) -> &Arc<Eviction> {
        &self.eviction
    }

    /// Resolves when the phase changes (or has changed since the last wait).
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// Bytes arrived: an idle connection starts reading a head; bytes after the
    /// body of the request being served are the start of the next head.
    fn on_read(&self) {
        if !self.watch_reads.load(Ordering::Acquire) {
            return;
        }
        let mut state = self.lock();
        match state.phase {
            Phase::Idle => {
                let deadline = Instant::now() + self.header_read_timeout;
                self.set(&mut state, Phase::Head, Some(deadline));
            }
            Phase::Responding => state.next_head = true,
            Phase::Busy if state.body_done => state.next_head = true,
            Phase::Busy | Phase::Head => {}
        }
    }

    /// A request head was parsed: the request is served. The returned guard ends the
    /// request when it is dropped (with the response body, or with the handler's
    /// future when the connection goes away first). `has_body`: whether a body
    /// follows the head.
    pub fn start_request(self: &Arc<Self>, has_body: bool) -> InFlight {
        let mut state = self.lock();
        state.in_flight = state.in_flight.saturating_add(1);
        state.body_done = !has_body;
        state.next_head = false;
        self.set(&mut state, Phase::Busy, None);
        InFlight {
            clock: Arc::clone(self),
        }
    }

    /// The request body was read to its end.
    fn body_finished(&self) {
        let mut state = self.lock();
        state.body_done = true;
        self.refresh_watch(&state);
    }

    /// The handler answered; the answer has `idle_timeout` to be taken by the client.
    fn answered(&self) {
        let mut state = self.lock();
        if state.phase == Phase::Busy {
            let deadline = Instant::now() + self.idle_timeout;
            self.set(&mut state, Phase::Responding, Some(deadline));
        }
    }

    fn finished(&self) {
        let mut state = self.lock();
        state.in_flight = state.in_flight.saturating_sub(1);
        if state.in_flight == 0 {
            // A pipelined head that began while this request was served has the
            // head's deadline, from now, not the idle one.
            if std::mem::take(&mut state.next_head) {
                let deadline = Instant::now() + self.header_read_timeout;
                self.set(&mut state, Phase::Head, Some(deadline));
            } else {
                let deadline = Instant::now() + self.idle_timeout;
                self.set(&mut state, Phase::Idle, Some(deadline));
            }
        }
    }
}

impl Drop for ConnClock {
    fn drop(&mut self) {
        let key = self.lock().idle_key.take();
        if let (Some(key), Some(idle)) = (key, &self.idle) {
            idle.leave(key);
        }
    }
}

/// One request being served; dropping it ends the request on its connection's clock.
#[derive(Debug)]
pub struct InFlight {
    clock: Arc<ConnClock>,
}

impl InFlight {
    /// The handler answered.
    pub fn answered(&self) {
        self.clock.answered();
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.clock.finished();
    }
}

/// A socket that tells its connection's clock when bytes arrive.
#[derive(Debug)]
pub struct WatchedIo<T> {
    inner: T,
    clock: Arc<ConnClock>,
}

impl<T> WatchedIo<T> {
    pub fn new(inner: T, clock: Arc<ConnClock>) -> Self {
        Self { inner, clock }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WatchedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.clock.on_read();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WatchedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The error of a request body that did not arrive in time.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
pub struct BodyTimedOut(pub Duration);

/// A request body that must be complete by a deadline.
#[derive(Debug)]
pub struct TimedBody<B> {
    inner: B,
    limit: Duration,
    deadline: Instant,
    /// Armed the first time the body has nothing to give: most requests never wait.
    sleep: Option<Pin<Box<Sleep>>>,
    timed_out: bool,
    /// The clock told when the body has been read to its end.
    clock: Option<Arc<ConnClock>>,
}

impl<B> TimedBody<B> {
    /// `inner`, which must end within `limit` from now.
    pub fn new(inner: B, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            deadline: Instant::now() + limit,
            sleep: None,
            timed_out: false,
            clock: None,
        }
    }

    /// `new`, telling the connection's clock when the body has been read.
    pub fn on_connection(inner: B, limit: Duration, clock: Arc<ConnClock>) -> Self {
        Self {
            clock: Some(clock),
            ..Self::new(inner, limit)
        }
    }

    fn give_up(&mut self) -> Poll<Option<Result<Frame<Bytes>, axum::BoxError>>> {
        self.timed_out = true;
        Poll::Ready(Some(Err(Box::new(BodyTimedOut(self.limit)))))
    }
}

impl<B> Body for TimedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        // Checked on every poll, not only when the body has nothing to give: a body
        // that always has a little more ready must still end by its deadline.
        if self.timed_out || Instant::now() >= self.deadline {
            return self.give_up();
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                let ended = frame.is_none() || self.inner.is_end_stream();
                if ended {
                    if let Some(clock) = self.clock.take() {
                        clock.body_finished();
                    }
                }
                Poll::Ready(frame.map(|frame| frame.map_err(Into::into)))
            }
            Poll::Pending => {
                let deadline = self.deadline;
                let sleep = self
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if sleep.as_mut().poll(cx).is_ready() {
                    return self.give_up();
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that ends its request on the connection's clock when it is done
/// (read to its end, or dropped).
#[derive(Debug)]
pub struct ResponseBody<B> {
    inner: B,
    in_flight: Option<InFlight>,
}

impl<B> ResponseBody<B> {
    pub fn new(inner: B, in_flight: InFlight) -> Self {
        Self {
            inner,
            in_flight: Some(in_flight),
        }
    }
}

impl<B: Body + Unpin> Body for ResponseBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) {
            self.in_flight = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether a body error (as an extractor reports it) is a [`BodyTimedOut`].
pub fn is_body_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if error.is::<BodyTimedOut>() {
            return true;
        }
        current = error.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `deadline` is `after` from some moment between `from` and now.
    fn due_in(deadline: Option<Instant>, from: Instant, after: Duration) -> bool {
        deadline.is_some_and(|at| at >= from + after && at <= Instant::now() + after)
    }

    #[test]
    fn the_phases_move_with_the_requests() {
        let (head, idle) = (Duration::from_secs(5), Duration::from_secs(60));
        let start = Instant::now();
        let clock = Arc::new(ConnClock::new(head, idle));
        let (phase, deadline) = clock.now();
        assert_eq!(phase, Phase::Head);
        assert!(due_in(deadline, start, head));
        clock.on_read();
        assert_eq!(
            clock.now(),
            (phase, deadline),
            "reads in a head move nothing"
        );
        let request = clock.start_request(false);
        assert_eq!(clock.now(), (Phase::Busy, None));
        let answered = Instant::now();
        request.answered();
        let (phase, deadline) = clock.now();
        assert_eq!(phase, Phase::Responding);
        assert!(due_in(deadline, answered, idle));
        let done = Instant::now();
        drop(request);
        let (phase, deadline) = clock.now();
        assert_eq!(phase, Phase::Idle);
        assert!(due_in(deadline, done, idle));
        let read = Instant::now();
        clock.on_read();
        let (phase, deadline) = clock.now();
        assert_eq!(
            phase,
            Phase::Head,
            "the first byte after idle starts a head"
        );
        assert!(due_in(deadline, read, head));
    }

    #[test]
    fn a_pipelined_head_gets_the_head_deadline_not_the_idle_one() {
        let (head, idle) = (Duration::from_secs(5), Duration::from_secs(60));
        let clock = Arc::new(ConnClock::new(head, idle));
        // A request with a body: its bytes move nothing.
        let request = clock.start_request(true);
        clock.on_read();
        clock.body_finished();
        request.answered();
        drop(request);
        assert_eq!(clock.now().0, Phase::Idle, "the body was not a next head");

        // Bytes after the body (or of a request without one) start the next head.
        clock.on_read();
        let request = clock.start_request(false);
        clock.on_read();
        request.answered();
        let done = Instant::now();
        drop(request);
        let (phase, deadline) = clock.now();
        assert_eq!(phase, Phase::Head);
        assert!(due_in(deadline, done, head));

        let request = clock.start_request(true);
        clock.body_finished();
        request.answered();
        clock.on_read();
        drop(request);
        assert_eq!(clock.now().0, Phase::Head, "read while responding");
    }

    #[test]
    fn an_idle_connection_is_registered_and_evictable() {
        let idle = Arc::new(IdleConnections::default());
        let (head, wait) = (Duration::from_secs(5), Duration::from_secs(60));
        let clock = Arc::new(ConnClock::registered(head, wait, Arc::clone(&idle)));
        assert!(idle.is_empty(), "a new connection is not idle");
        let request = clock.start_request(false);
        assert!(idle.is_empty());
        drop(request);
        assert_eq!(idle.len(), 1);
        clock.on_read();
        assert!(
            idle.is_empty(),
            "the first byte of a request leaves the register"
        );
        drop(clock.start_request(false));
        assert_eq!(idle.len(), 1);
        assert!(idle.evict_oldest());
        assert!(clock.eviction().is_evicted());
        assert!(clock.is_quiet());
        drop(clock.start_request(false));
        drop(clock);
        assert!(idle.is_empty(), "a closed connection leaves the register");
    }

    /// A body that always has one more byte ready.
    struct Endless;

    impl Body for Endless {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b" ")))))
        }
    }

    #[tokio::test]
    async fn a_body_that_never_waits_still_times_out() {
        let mut timed = TimedBody::new(Endless, Duration::from_millis(50));
        let started = Instant::now();
        let ended = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                let frame = std::future::poll_fn(|cx| Pin::new(&mut timed).poll_frame(cx)).await;
                match frame {
                    Some(Ok(_)) => tokio::task::yield_now().await,
                    other => break other,
                }
            }
        })
        .await
        .expect("the deadline is checked on every poll")
        .expect("an endless body does not end")
        .expect_err("a timeout");
        assert!(is_body_timeout(ended.as_ref()), "{ended}");
        assert!(started.elapsed() >= Duration::from_millis(50));
    }

    /// A body whose sender never sends.
    struct Stalled;

    impl Body for Stalled {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Pending
        }
    }

    #[tokio::test]
    async fn a_stalled_body_times_out() {
        let mut timed = TimedBody::new(Stalled, Duration::from_millis(50));
        let started = Instant::now();
        let error = std::future::poll_fn(|cx| Pin::new(&mut timed).poll_frame(cx))
            .await
            .expect("a frame")
            .expect_err("a timeout");
        assert!(is_body_timeout(error.as_ref()), "{error}");
        assert!(started.elapsed() >= Duration::from_millis(50));
        let wrapped = axum::Error::new(error);
        assert!(is_body_timeout(&wrapped), "found through `source`");
    }
}
