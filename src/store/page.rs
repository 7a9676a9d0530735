//! Keyset pagination, newest first. Ids are time-ordered, so `id` alone orders a listing:
//! `starting_after=X` returns older objects than X, `ending_before=Y` newer ones than Y, and both
//! together the objects between the two (older than X and newer than Y), newest first.
//!
//! Each store module names its own table, columns and filter columns ([`Listing`]); callers
//! above the store pass a [`PageQuery`] and that module's typed filter, never SQL.
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AssertSqlSafe};

/// Where a page starts: after an object, before one, between two, or at the newest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursor {
    pub starting_after: Option<String>,
    pub ending_before: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageQuery {
    pub limit: i64,
    pub cursor: Cursor,
}

#[derive(Debug, Clone)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub has_more: bool,
}

impl<T> Page<T> {
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            data: self.data.into_iter().map(f).collect(),
            has_more: self.has_more,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PageError {
    /// The cursor names no object of this tenant's listing (one from another tenant does not).
    #[error("no such object: {0}")]
    UnknownCursor(String),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// What one store module lists: its table and the columns its rows are read from.
pub(super) struct Listing {
    pub table: &'static str,
    pub columns: &'static str,
}

impl Listing {
    /// One page of the tenant's rows that match `filters` (column = value). The cursor is checked
    /// first; then one row more than asked is fetched to learn whether there is more.
    #[tracing::instrument(target = "otel", level = "debug", name = "db page.fetch", skip_all, fields(otel.kind = "client", db.table = self.table))]
    pub async fn fetch<T>(
        &self,
        conn: &mut AnyConnection,
        tenant: &str,
        page: &PageQuery,
        filters: &[(&'static str, &str)],
        map: impl Fn(&AnyRow) -> Result<T, sqlx::Error>,
    ) -> Result<Page<T>, PageError> {
        let (after, before) = (&page.cursor.starting_after, &page.cursor.ending_before);
        // Only `ending_before` alone walks towards newer objects; with `starting_after` the page
        // walks down from it (bounded below by `ending_before`, when given).
        let newer = after.is_none() && before.is_some();
        for id in [after, before].into_iter().flatten() {
            if !self.exists(conn, tenant, id).await? {
                return Err(PageError::UnknownCursor(id.clone()));
            }
        }
        let mut sql = format!("SELECT {} FROM {} WHERE tenant_id = $1", self.columns, self.table);
        let mut n = 1;
        for (column, _) in filters {
            n += 1;
            sql.push_str(&format!(" AND {column} = ${n}"));
        }
        if after.is_some() {
            n += 1;
            sql.push_str(&format!(" AND id < ${n}"));
        }
        if before.is_some() {
            n += 1;
            sql.push_str(&format!(" AND id > ${n}"));
        }
        n += 1;
        sql.push_str(&format!(
            " ORDER BY id {} LIMIT ${n}",
            if newer { "ASC" } else { "DESC" }
        ));

        let mut query = sqlx::query(AssertSqlSafe(sql)).bind(tenant);
        for (_, value) in filters {
            query = query.bind(*value);
        }
        for id in [after, before].into_iter().flatten() {
            query = query.bind(id);
        }
        let rows = query.bind(page.limit + 1).fetch_all(conn).await?;
        let has_more = rows.len() as i64 > page.limit;
        let mut data = rows
            .iter()
            .take(page.limit as usize)
            .map(map)
            .collect::<Result<Vec<_>, _>>()?;
        if newer {
            data.reverse();
        }
        Ok(Page { data, has_more })
    }

    async fn exists(&self, conn: &mut AnyConnection, tenant: &str, id: &str) -> Result<bool, sqlx::Error> {
        let sql = AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM {} WHERE tenant_id = $1 AND id = $2",
            self.table
        ));
        let n: i64 = sqlx::query_scalar(sql).bind(tenant).bind(id).fetch_one(conn).await?;
        Ok(n > 0)
    }
}

/// The filters that are set, as (column, value): a typed filter's `Option`s, in order.
pub(super) fn set<'a, const N: usize>(filters: [(&'static str, Option<&'a str>); N]) -> Vec<(&'static str, &'a str)> {
    filters
        .into_iter()
        .filter_map(|(column, value)| Some((column, value?)))
        .collect()
}
