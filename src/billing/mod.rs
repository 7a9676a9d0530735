//! Billing operations: each one runs inside the caller's write transaction (see `operation`),
//! applies the domain rules to what the store holds, and writes its effects (rows, ledger
//! postings, audit, events). The reads beside them answer the same objects, so the API calls
//! this layer for both.
pub mod catalog;
pub mod changes;
pub mod credit_notes;
pub mod customers;
pub mod cycles;
pub mod events;
pub mod group_commit;
pub mod invoices;
pub mod ledger;
pub mod metering;
pub mod payments;
pub mod rollups;
pub mod subscriptions;
pub mod test_clocks;
mod usage;

use crate::domain::metadata::{self, Metadata};
use crate::operation::{Error, Result};

/// An update's metadata merged into an object's: keys are replaced, an empty value removes its
/// key, and the result must stay within `metadata::MAX_KEYS` (422 `too_many_keys`).
pub(crate) fn merge_metadata(current: &mut Metadata, changes: Metadata) -> Result<()> {
    current.extend(changes);
    current.retain(|_, v| !v.is_empty());
    if current.len() > metadata::MAX_KEYS {
        return Err(Error::invalid(
            "metadata",
            "too_many_keys",
            format!("at most {} keys", metadata::MAX_KEYS),
        ));
    }
    Ok(())
}
