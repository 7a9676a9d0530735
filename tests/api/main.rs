//! Integration tests: one binary (one link step), one module per capability.
mod helpers;

mod auth;
mod bad_input;
mod billing;
mod catalog;
mod changes;
mod concurrency;
mod credit_notes;
mod cycle_processes;
mod deploy;
mod fuzz;
mod health;
mod http_errors;
mod idempotency;
mod middleware;
mod migrations;
mod observability;
mod openapi;
mod previews;
mod process;
mod properties;
mod rate_limit;
mod subscriptions;
mod tenancy;
mod walkthrough;
mod webhooks;
