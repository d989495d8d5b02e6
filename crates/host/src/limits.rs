//! The process's own limits.

/// Raises this process's soft limit on open files to its hard limit, once,
/// and returns the soft limit now in force: the caps on connections are
/// sized from it, so that a crowd of connections cannot make the process
/// run out of descriptors below its own caps. `None` where there is no
/// such limit (or it cannot be read).
pub fn open_files_limit() -> Option<u64> {
    static LIMIT: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *LIMIT.get_or_init(raise)
}

#[cfg(unix)]
fn raise() -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    let soft = limit.current?;
    if limit.maximum.is_none_or(|hard| hard > soft) {
        // Some systems refuse "unlimited" for open files: a large number
        // does as well.
        limit.current = Some(limit.maximum.unwrap_or(1 << 20).min(1 << 20));
        if setrlimit(Resource::Nofile, limit).is_err() {
            return Some(soft);
        }
    }
    getrlimit(Resource::Nofile).current
}

#[cfg(not(unix))]
fn raise() -> Option<u64> {
    None
}

/// Connections a server may hold at once, and handshakes in progress, so
/// that they fit in `open_files` descriptors: `per_connection` descriptors
/// each (the socket, and for a file server the file being read), with
/// room kept for everything else. At most `max` and `max_pending`.
pub fn connection_caps(open_files: Option<u64>, per_connection: u64, max: usize, max_pending: usize) -> (usize, usize) {
    let Some(n) = open_files else { return (max, max_pending) };
    let usable = n.saturating_sub(64).max(16);
    let pending = ((usable / 8) as usize).clamp(4, max_pending.max(4));
    let connections = ((usable - pending as u64) / per_connection.max(1)) as usize;
    (connections.clamp(4, max.max(4)), pending)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_fit_the_descriptors() {
        assert_eq!(connection_caps(None, 2, 512, 64), (512, 64));
        // A generous limit: the configured caps.
        assert_eq!(connection_caps(Some(1 << 20), 2, 512, 64), (512, 64));
        // ulimit -n 1024 for an index: one descriptor per connection.
        let (c, p) = connection_caps(Some(1024), 1, 25_000, 256);
        assert!(c + p + 64 <= 1024, "{c} + {p}");
        assert_eq!((c, p), (840, 120));
        // A file server uses two per connection.
        let (c, p) = connection_caps(Some(1024), 2, 512, 64);
        assert!(2 * c + p + 64 <= 1024, "{c} + {p}");
        assert!(open_files_limit().is_none_or(|n| n >= 64));
    }
}
