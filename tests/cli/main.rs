//! End-to-end tests: the real `chatdump` binary against in-process fake
//! platforms (wiremock on 127.0.0.1). One test binary for all of them.

mod attachments;
mod boundaries;
mod caresoft;
mod common;
mod demo;
mod enrich;
mod live;
mod objects;
mod operations;
// Parquet outputs exist with the `parquet` feature (on by default).
#[cfg(feature = "parquet")]
mod parquet;
mod redact;
mod state;
mod tap;
mod transcripts;
mod trust;
mod ujet;
mod unreadable;
mod ux;
mod wolkvox;
