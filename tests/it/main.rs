//! Integration tests: real HTTP against a server on 127.0.0.1:0.
// Tests decode outputs directly to check pixels.
#![allow(clippy::disallowed_methods)]

mod animation;
// `both_dbs!` (defined in api) is used by the modules after it.
#[macro_use]
mod api;
mod auth;
mod cluster;
mod delivery;
mod fuzz_regressions;
mod gallery;
mod golden;
mod heif;
mod http;
mod identity;
mod ingest;
mod layers;
mod limits;
mod ops;
mod presets;
mod privacy;
mod regression;
mod s3;
mod soak;
mod support;
