//! The HTTP edge: how connections are accepted, timed and refused before a request
//! reaches the router.
//!
//! `writ serve` runs its own accept loop over hyper's HTTP/1.1 connection instead of
//! `axum::serve`, for three things the framework's loop does not do:
//!
//! - a connection limit below the file-descriptor limit, so that idle sockets can
//!   never make `accept` fail with `EMFILE` and starve `/healthz`; at the limit the
//!   oldest idle keep-alive connection is closed to make room ([`accept`],
//!   [`idle`]);
//! - separate deadlines for reading a request head, for a keep-alive connection
//!   waiting for its next request, and for reading a body ([`watch`]). hyper's own
//!   `header_read_timeout` (1.6 and later) also runs while a keep-alive connection
//!   waits for its next request, so it cannot give an idle timeout longer than the
//!   head timeout; it is switched off and [`watch`] keeps both clocks;
//! - the bearer token checked before any body is read ([`gate`]);
//! - a graceful stop with a deadline: connections still open after
//!   `shutdown_drain` are cut.

pub mod accept;
pub mod gate;
pub mod idle;
pub mod watch;

use std::time::Duration;

/// The default time a client has to send a whole request head.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// The default time a keep-alive connection may wait for its next request.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// The default time a client has to send a whole request body, from the end of its
/// head. A 1 MiB body needs 35 KiB/s.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// The default time connections in flight have to finish after a stop was asked
/// for; then they are cut.
pub const DEFAULT_SHUTDOWN_DRAIN: Duration = Duration::from_secs(10);
/// The default connection limit is at most this many.
pub const MAX_DEFAULT_CONNECTIONS: usize = 10_000;
/// The soft open-files limit assumed when it cannot be read.
const FALLBACK_OPEN_FILES: u64 = 1024;

/// The limits of the HTTP edge, resolved from the `[http]` section of the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EdgeLimits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub body_read_timeout: Duration,
    /// Connections served at once. Past it, the oldest idle keep-alive connection
    /// is closed to make room; with none idle, a new one is closed at once.
    pub max_connections: usize,
    /// How long a graceful stop waits for the connections in flight.
    pub shutdown_drain: Duration,
}

impl Default for EdgeLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            max_connections: default_max_connections(open_files_limit()),
            shutdown_drain: DEFAULT_SHUTDOWN_DRAIN,
        }
    }
}

/// Three quarters of the soft open-files limit, at most [`MAX_DEFAULT_CONNECTIONS`]:
/// the rest is headroom for the ledger, the state store and the policy files.
pub fn default_max_connections(open_files: Option<u64>) -> usize {
    let limit = open_files.unwrap_or(FALLBACK_OPEN_FILES);
    let three_quarters = usize::try_from(limit / 4 * 3).unwrap_or(usize::MAX);
    three_quarters.clamp(1, MAX_DEFAULT_CONNECTIONS)
}

/// The soft `RLIMIT_NOFILE` of this process, read from `/proc/self/limits` (no
/// `unsafe` needed); `None` where that file does not exist or says "unlimited".
pub fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_open_files(&limits)
}

/// The soft limit on the `Max open files` line of a `/proc/PID/limits` text.
fn parse_open_files(limits: &str) -> Option<u64> {
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_open_files_line_is_read() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max cpu time              unlimited            unlimited            seconds   \n\
                    Max open files            1024                 524288               files     \n";
        assert_eq!(parse_open_files(text), Some(1024));
        assert_eq!(
            parse_open_files("Max open files  unlimited  unlimited  files"),
            None
        );
        assert_eq!(parse_open_files(""), None);
    }

    #[test]
    fn the_default_limit_leaves_headroom() {
        assert_eq!(default_max_connections(Some(1024)), 768);
        assert_eq!(default_max_connections(Some(256)), 192);
        assert_eq!(
            default_max_connections(Some(1 << 20)),
            MAX_DEFAULT_CONNECTIONS
        );
        assert_eq!(default_max_connections(Some(1)), 1);
        assert_eq!(default_max_connections(None), 768);
    }
}
