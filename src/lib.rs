//! billing-api: a multi-tenant billing backend.
// Request and data paths never unwrap: failures become problems or logged errors.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
pub mod admin;
pub mod api;
pub mod app;
pub mod auth;
pub mod billing;
pub mod build_info;
pub mod cli;
pub mod clock;
pub mod config;
pub mod doctor;
pub mod domain;
pub mod healthcheck;
pub mod http;
#[cfg(test)]
mod layers;
pub mod objects;
pub mod operation;
pub mod outbound;
pub mod ratelimit;
pub mod shutdown;
pub mod store;
pub mod systemd;
pub mod telemetry;
pub mod webhooks;
