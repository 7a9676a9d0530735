//! Reading typed values out of `Any` rows, with the column named in the error.
use sqlx::any::AnyRow;
use sqlx::{Decode, Row, Type};

use crate::domain::metadata::Metadata;

pub fn get<'r, T>(row: &'r AnyRow, column: &str) -> Result<T, sqlx::Error>
where
    T: Decode<'r, sqlx::Any> + Type<sqlx::Any>,
{
    row.try_get(column)
}

pub fn metadata(row: &AnyRow) -> Result<Metadata, sqlx::Error> {
    let text: String = row.try_get("metadata")?;
    serde_json::from_str(&text).map_err(|e| sqlx::Error::ColumnDecode {
        index: "metadata".into(),
        source: Box::new(e),
    })
}

pub fn metadata_text(metadata: &Metadata) -> String {
    serde_json::to_string(metadata).unwrap_or_else(|_| "{}".to_owned())
}
