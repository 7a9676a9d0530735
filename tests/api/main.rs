//! Integration tests: one binary (one link step), one module per capability.
mod helpers;

mod health;
mod http_errors;
mod middleware;
mod migrations;
mod process;
