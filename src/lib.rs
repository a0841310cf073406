//! imgorigin: an image origin server. See `docs/architecture.md` for the module map; the
//! request path runs server → delivery → auth, params, cache, storage, workers, pipeline,
//! headers.

pub mod api;
pub mod app;
pub mod auth;
pub mod cache;
pub mod cluster;
pub mod config;
pub mod delivery;
pub mod error;
pub mod facts;
#[doc(hidden)]
pub mod fuzzing;
pub mod gallery;
pub mod headers;
pub mod ingest;
pub mod isobmff;
pub mod library;
pub mod media;
pub mod metadata;
pub mod originals;
pub mod params;
pub mod pipeline;
pub mod server;
pub mod shared;
pub mod state;
pub mod storage;
pub mod telemetry;
pub mod variants;
pub mod workers;

pub use app::{App, AppBuilder, StartError};
pub use state::AppState;

/// Seconds since the Unix epoch (signature expiries, token times, share lifetimes).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
