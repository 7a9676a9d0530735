//! Reading the events that billing (and webhook health) recorded.
use sqlx::AnyConnection;

use crate::objects::Event;
use crate::operation::{Error, Result};
use crate::store::events::{self, Filter};
use crate::store::page::{Page, PageQuery};

pub async fn get(conn: &mut AnyConnection, tenant: &str, id: &str) -> Result<Event> {
    events::find(conn, tenant, id).await?.ok_or(Error::NotFound("event"))
}

pub async fn list(conn: &mut AnyConnection, tenant: &str, page: &PageQuery, filter: &Filter) -> Result<Page<Event>> {
    Ok(events::list(conn, tenant, page, filter).await?)
}
