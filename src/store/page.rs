//! Keyset pagination, newest first. Ids are time-ordered, so `id` alone orders a listing:
//! `starting_after=X` returns older objects than X, `ending_before=X` newer ones.
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AssertSqlSafe};

#[derive(Debug, Clone, Default)]
pub enum Cursor {
    #[default]
    None,
    StartingAfter(String),
    EndingBefore(String),
}

#[derive(Debug, Clone)]
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

/// An equality filter on a listing: (column, value).
pub type Filter<'a> = (&'static str, &'a str);

impl PageQuery {
    /// One page of `table` for `tenant`, filtered by equality on `filters`. Fetches one row more
    /// than asked to learn whether there is more.
    #[tracing::instrument(target = "otel", level = "debug", name = "db page.fetch", skip_all, fields(otel.kind = "client"))]
    pub async fn fetch<T>(
        &self,
        conn: &mut AnyConnection,
        table: &'static str,
        columns: &'static str,
        tenant: &str,
        filters: &[Filter<'_>],
        map: impl Fn(&AnyRow) -> Result<T, sqlx::Error>,
    ) -> Result<Page<T>, sqlx::Error> {
        let mut sql = format!("SELECT {columns} FROM {table} WHERE tenant_id = $1");
        let mut n = 1;
        for (column, _) in filters {
            n += 1;
            sql.push_str(&format!(" AND {column} = ${n}"));
        }
        let (cursor, newer) = match &self.cursor {
            Cursor::None => (None, false),
            Cursor::StartingAfter(id) => (Some(id), false),
            Cursor::EndingBefore(id) => (Some(id), true),
        };
        if cursor.is_some() {
            n += 1;
            sql.push_str(&format!(" AND id {} ${n}", if newer { ">" } else { "<" }));
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
        if let Some(id) = cursor {
            query = query.bind(id);
        }
        let rows = query.bind(self.limit + 1).fetch_all(conn).await?;
        let has_more = rows.len() as i64 > self.limit;
        let mut data = rows
            .iter()
            .take(self.limit as usize)
            .map(map)
            .collect::<Result<Vec<_>, _>>()?;
        if newer {
            data.reverse();
        }
        Ok(Page { data, has_more })
    }
}

/// Whether `id` exists in `table` for `tenant` (a cursor from another tenant does not).
#[tracing::instrument(target = "otel", level = "debug", name = "db page.exists", skip_all, fields(otel.kind = "client"))]
pub async fn exists(
    conn: &mut AnyConnection,
    table: &'static str,
    tenant: &str,
    id: &str,
) -> Result<bool, sqlx::Error> {
    let sql = AssertSqlSafe(format!("SELECT COUNT(*) FROM {table} WHERE tenant_id = $1 AND id = $2"));
    let n: i64 = sqlx::query_scalar(sql).bind(tenant).bind(id).fetch_one(conn).await?;
    Ok(n > 0)
}
