//! The accept loop and per-connection limits (`axum::serve` exposes no hyper settings).
//!
//! Connections are served by hyper-util's auto builder (HTTP/1.1, and HTTP/2 with prior
//! knowledge). Each one has a watchdog that enforces:
//! - a header-read timeout (`server.header_read_timeout_s`): the first request head must be
//!   complete this long after accept, and every later HTTP/1 head this long after its first
//!   byte arrived. A half-sent head (slowloris) or a silent socket is then dropped.
//! - an idle timeout (`server.idle_timeout_s`): no byte in either direction for this long
//!   closes the connection gracefully (in-flight requests finish); still no progress one more
//!   idle period later (a client that stopped reading its response) drops it.
//!
//! hyper's own `header_read_timeout` also runs while a keep-alive connection waits for its
//! next request, so it cannot be short for heads yet long for idle keep-alive (a load
//! balancer reuses connections for 60 s); hence the watchdog. hyper's timer stays set to
//! header + idle timeout as a backstop.
//!
//! At `server.max_connections` open connections the loop stops accepting until one closes:
//! new connections wait in the kernel's listen backlog rather than being accepted and shut.

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// The connection limits of one listener.
#[derive(Clone, Copy, Debug)]
pub(super) struct ConnLimits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

/// Accepts and serves connections until `shutdown` turns true, then stops accepting (the
/// listener is closed at once), asks every connection to finish, and waits up to `grace`
/// before dropping what is left.
pub(super) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let limits = ConnLimits {
        max_connections: fd_bounded(limits.max_connections),
        ..limits
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout + limits.idle_timeout);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let conn_shutdown = shutdown.clone();
    let mut conns = JoinSet::new();
    // At most one warning a minute: under a flood the cap is reached over and over.
    let mut warned: Option<Instant> = None;
    loop {
        if conns.len() >= limits.max_connections {
            if warned.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                tracing::warn!(
                    max_connections = limits.max_connections,
                    "connection limit reached; new connections wait in the listen backlog"
                );
                warned = Some(Instant::now());
            }
            tokio::select! {
                _ = conns.join_next() => continue,
                _ = stopped(&mut shutdown) => break,
            }
        }
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((sock, peer)) => {
                    conns.spawn(connection(
                        sock,
                        peer,
                        router.clone(),
                        builder.clone(),
                        limits,
                        conn_shutdown.clone(),
                    ));
                }
                Err(e) => accept_error(e).await,
            },
            Some(_) = conns.join_next() => {}
            _ = stopped(&mut shutdown) => break,
        }
    }
    drop(listener);
    let drained =
        tokio::time::timeout(grace, async { while conns.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            open = conns.len(),
            "shutdown grace period over; dropping remaining connections"
        );
        conns.shutdown().await;
    }
}

/// Descriptors kept free for storage, database, files and the other listener.
const FD_RESERVE: u64 = 256;

/// The connection cap, lowered (with a warning) to fit the open-file limit: past it,
/// accept fails with EMFILE and nothing else can open a file either. The soft limit is
/// first raised to the hard one, as most servers do.
#[allow(unsafe_code)] // getrlimit/setrlimit through libc, see SAFETY below
fn fd_bounded(max_connections: usize) -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return max_connections;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = lim.rlim_max;
        }
    }
    let room = lim.rlim_cur.saturating_sub(FD_RESERVE).max(16);
    if max_connections as u64 > room {
        tracing::warn!(
            max_connections,
            open_file_limit = lim.rlim_cur,
            using = room,
            "server.max_connections is above what the open-file limit allows; lowered"
        );
        return room as usize;
    }
    max_connections
}

/// Resolves once the server is shutting down (the `Ref` is not held across awaits).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

/// Out of file descriptors (or memory) is worth a pause; a peer that went away before
/// being accepted is not.
async fn accept_error(e: io::Error) {
    use io::ErrorKind::*;
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted | WouldBlock
    ) {
        return;
    }
    tracing::error!(error = %e, "accept failed; retrying shortly");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// What the watchdog of one connection knows, updated by its I/O and its service.
struct ConnState {
    start: Instant,
    /// Last byte read or written, in ms since `start`.
    last_io_ms: AtomicU64,
    /// When the request head now being read began (ms since `start`); `NO_HEAD` if none.
    head_since_ms: AtomicU64,
    /// Requests handed to the router whose response is not finished.
    active: AtomicUsize,
    /// HTTP/2: frames between requests are not heads, so only the idle timeout applies.
    h2: AtomicBool,
    /// Wakes the watchdog when a head starts (it may be sleeping towards the idle deadline).
    head_started: Notify,
}

const NO_HEAD: u64 = u64::MAX;

impl ConnState {
    fn new() -> Self {
        ConnState {
            start: Instant::now(),
            last_io_ms: AtomicU64::new(0),
            // The first request's head is due `header_read_timeout` after accept.
            head_since_ms: AtomicU64::new(0),
            active: AtomicUsize::new(0),
            h2: AtomicBool::new(false),
            head_started: Notify::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn at(&self, ms: u64) -> Instant {
        self.start + Duration::from_millis(ms)
    }

    fn on_read(&self) {
        let now = self.now_ms();
        self.last_io_ms.store(now, Ordering::Relaxed);
        // First byte of a new HTTP/1 head: its clock starts now.
        if !self.h2.load(Ordering::Relaxed) && self.active.load(Ordering::Relaxed) == 0 {
            let started = self
                .head_since_ms
                .compare_exchange(NO_HEAD, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok();
            if started {
                self.head_started.notify_one();
            }
        }
    }

    fn on_write(&self) {
        self.last_io_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    fn on_request(self: &Arc<Self>, h2: bool) -> ActiveGuard {
        if h2 {
            self.h2.store(true, Ordering::Relaxed);
        }
        self.active.fetch_add(1, Ordering::Relaxed);
        self.head_since_ms.store(NO_HEAD, Ordering::Relaxed);
        ActiveGuard(self.clone())
    }
}

/// Counts a request as active until its response body is done or dropped.
struct ActiveGuard(Arc<ConnState>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.on_write();
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that keeps its request counted as active.
struct GuardedBody {
    inner: axum::body::Body,
    _guard: ActiveGuard,
}

impl HttpBody for GuardedBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The socket, reporting reads and writes to the watchdog.
struct Tracked {
    sock: TcpStream,
    state: Arc<ConnState>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.sock).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.state.on_read();
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.sock).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.state.on_write();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.sock).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.state.on_write();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.sock.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.sock).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.sock).poll_shutdown(cx)
    }
}

/// Serves one connection under its watchdog.
async fn connection(
    sock: TcpStream,
    peer: SocketAddr,
    router: Router,
    builder: Arc<auto::Builder<TokioExecutor>>,
    limits: ConnLimits,
    mut shutdown: watch::Receiver<bool>,
) {
    let state = Arc::new(ConnState::new());
    let io = TokioIo::new(Tracked {
        sock,
        state: state.clone(),
    });
    let st = state.clone();
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        let guard = st.on_request(req.version() == hyper::Version::HTTP_2);
        // Handlers (delivery's viewer address) read the peer from the extensions.
        req.extensions_mut().insert(ConnectInfo(peer));
        let mut router = router.clone();
        async move {
            let resp = tower_service::Service::call(&mut router, req).await?;
            Ok::<_, std::convert::Infallible>(resp.map(|inner| GuardedBody {
                inner,
                _guard: guard,
            }))
        }
    });
    let conn = builder.serve_connection(io, svc);
    tokio::pin!(conn);
    // When the connection was asked to finish (idle or server shutdown).
    let mut closing_since: Option<u64> = None;
    loop {
        let deadline = next_deadline(&state, &limits, closing_since);
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = state.head_started.notified() => {}
            _ = stopped(&mut shutdown), if closing_since.is_none() => {
                conn.as_mut().graceful_shutdown();
                closing_since = Some(state.now_ms());
            }
            _ = tokio::time::sleep_until(deadline) => {
                let now = state.now_ms();
                let head = state.head_since_ms.load(Ordering::Relaxed);
                if head != NO_HEAD && now >= head + ms(limits.header_read_timeout) {
                    tracing::debug!(%peer, "request head not complete in time; closing");
                    return;
                }
                let last = state.last_io_ms.load(Ordering::Relaxed);
                let idle = ms(limits.idle_timeout);
                match closing_since {
                    None if now >= last + idle => {
                        conn.as_mut().graceful_shutdown();
                        closing_since = Some(now);
                    }
                    Some(since) if now >= last.max(since) + idle => {
                        tracing::debug!(%peer, "connection made no progress; dropping it");
                        return;
                    }
                    _ => {}
                }
            }
        }
    }
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// The earliest moment the watchdog must look again.
fn next_deadline(state: &ConnState, limits: &ConnLimits, closing_since: Option<u64>) -> Instant {
    let last = state.last_io_ms.load(Ordering::Relaxed);
    let idle_from = closing_since.map_or(last, |s| last.max(s));
    let mut at = idle_from + ms(limits.idle_timeout);
    let head = state.head_since_ms.load(Ordering::Relaxed);
    if head != NO_HEAD {
        at = at.min(head + ms(limits.header_read_timeout));
    }
    state.at(at)
}
