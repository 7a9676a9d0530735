//! Billing operations: each one runs inside the caller's write transaction (see `operation`),
//! applies the domain rules to what the store holds, and writes its effects (rows, ledger
//! postings, audit, events). The reads beside them answer the same objects, so the API calls
//! this layer for both.
pub mod customers;
pub mod events;
pub mod invoices;
pub mod ledger;
pub mod payments;
