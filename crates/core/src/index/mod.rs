//! The index: the network's file list, kept by a central peer while files
//! move directly between peers (the hybrid design).
//!
//! * A [`Tracker`] is the index. It never carries file data.
//! * A serving peer runs an [`Announcer`]: one session to the index that
//!   joins (with the port it serves on; the index takes the host from the
//!   connection, so a peer announces only for itself), publishes its file
//!   list, then publishes what changes and pings while nothing does. The
//!   index forgets the peer when the session ends or stays silent for its
//!   TTL; the announcer reconnects with backoff and publishes everything
//!   again, so an index that restarts fills up again by itself.
//! * Clients ask the index ([`Session::index_files`](crate::client::Session::index_files),
//!   [`locate`](crate::client::Session::locate), [`peers`](crate::client::Session::peers))
//!   and then talk to the peers directly; a downloader that gets bad data
//!   from a peer reports it ([`suspect`](crate::client::Session::suspect)),
//!   and the index leaves that peer out of the answers for that content
//!   for a while.
//!
//! * A downloader that swarms tells the index what it fetches
//!   ([`announce_fetching`]): the index names it as a partial source of
//!   that content to the downloaders that swarm (after the peers that
//!   have the whole file), and never lists it as a file.
//!
//! Over TLS the index knows each peer by its certificate, and a private
//! index lets only peers its gate knows join or ask.
//!
//! Everything is bounded: peers listed, files per peer, contents named per
//! answer, sources per content ([`MAX_SOURCES`](crate::protocol::MAX_SOURCES)),
//! publishes and reports per second per session.

mod announcer;
mod lookup;
mod state;
mod tracker;

pub use announcer::{AnnounceConfig, Announcer, FetchingEnd, announce_fetching};
pub use lookup::{Found, IndexClient, LookupError, corrupt_sources, peer_labels};
pub use state::{IndexError, IndexState, Limits};
pub use tracker::{Tracker, TrackerConfig};
