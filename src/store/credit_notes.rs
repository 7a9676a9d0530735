//! Credit notes and their lines. Both are append-only (a trigger on each backend refuses an
//! UPDATE or DELETE): a credit note is a document, as an invoice number is.
use std::collections::HashMap;

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AssertSqlSafe};

use super::page::{self, Listing, Page, PageError, PageQuery};
use super::rows::{get, metadata, metadata_text};
use crate::objects::{CreditNote, CreditNoteLine};

const COLUMNS: &str = "id, number, invoice_id, customer_id, currency, reason, memo, subtotal, tax, total, \
    pre_payment_amount, refund_amount, credit_amount, metadata, created";
const LISTING: Listing = Listing {
    table: "credit_notes",
    columns: COLUMNS,
};
const LINE_COLUMNS: &str = "id, invoice_line_id, description, amount, tax";

fn from_row(row: &AnyRow) -> Result<CreditNote, sqlx::Error> {
    Ok(CreditNote {
        id: get(row, "id")?,
        object: CreditNote::OBJECT,
        number: get(row, "number")?,
        invoice: get(row, "invoice_id")?,
        customer: get(row, "customer_id")?,
        currency: get(row, "currency")?,
        reason: get(row, "reason")?,
        memo: get(row, "memo")?,
        subtotal: get(row, "subtotal")?,
        tax: get(row, "tax")?,
        total: get(row, "total")?,
        pre_payment_amount: get(row, "pre_payment_amount")?,
        refund_amount: get(row, "refund_amount")?,
        credit_amount: get(row, "credit_amount")?,
        lines: Vec::new(),
        metadata: metadata(row)?,
        created: get(row, "created")?,
    })
}

fn line_from_row(row: &AnyRow) -> Result<CreditNoteLine, sqlx::Error> {
    Ok(CreditNoteLine {
        id: get(row, "id")?,
        object: CreditNoteLine::OBJECT,
        invoice_line: get(row, "invoice_line_id")?,
        description: get(row, "description")?,
        amount: get(row, "amount")?,
        tax: get(row, "tax")?,
    })
}

/// Takes the tenant's next credit note number, as invoices take theirs: the counter row stays
/// locked until the transaction commits, and a rollback gives the number back.
#[tracing::instrument(target = "otel", level = "debug", name = "db credit_notes.take_number", skip_all, fields(otel.kind = "client"))]
pub async fn take_number(conn: &mut AnyConnection, tenant: &str, now: i64) -> Result<(i64, String), sqlx::Error> {
    let row = sqlx::query(
        "INSERT INTO tenants (id, created, next_credit_note_number) VALUES ($1, $2, 2) \
         ON CONFLICT (id) DO UPDATE SET next_credit_note_number = tenants.next_credit_note_number + 1 \
         RETURNING next_credit_note_number - 1 AS number, invoice_prefix",
    )
    .bind(tenant)
    .bind(now)
    .fetch_one(conn)
    .await?;
    Ok((get(&row, "number")?, get(&row, "invoice_prefix")?))
}

/// Stores a credit note with its lines.
#[tracing::instrument(target = "otel", level = "debug", name = "db credit_notes.insert", skip_all, fields(otel.kind = "client"))]
pub async fn insert(conn: &mut AnyConnection, tenant: &str, seq: i64, n: &CreditNote) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO credit_notes (id, tenant_id, number, number_seq, invoice_id, customer_id, currency, reason, memo, \
         subtotal, tax, total, pre_payment_amount, refund_amount, credit_amount, metadata, created) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
    )
    .bind(&n.id)
    .bind(tenant)
    .bind(&n.number)
    .bind(seq)
    .bind(&n.invoice)
    .bind(&n.customer)
    .bind(&n.currency)
    .bind(&n.reason)
    .bind(&n.memo)
    .bind(n.subtotal)
    .bind(n.tax)
    .bind(n.total)
    .bind(n.pre_payment_amount)
    .bind(n.refund_amount)
    .bind(n.credit_amount)
    .bind(metadata_text(&n.metadata))
    .bind(n.created)
    .execute(&mut *conn)
    .await?;
    for line in &n.lines {
        sqlx::query(
            "INSERT INTO credit_note_lines (id, tenant_id, credit_note_id, invoice_line_id, description, amount, tax, created) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&line.id)
        .bind(tenant)
        .bind(&n.id)
        .bind(&line.invoice_line)
        .bind(&line.description)
        .bind(line.amount)
        .bind(line.tax)
        .bind(n.created)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

#[tracing::instrument(target = "otel", level = "debug", name = "db credit_notes.find", skip_all, fields(otel.kind = "client"))]
pub async fn find(conn: &mut AnyConnection, tenant: &str, id: &str) -> Result<Option<CreditNote>, sqlx::Error> {
    let sql = AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM credit_notes WHERE tenant_id = $1 AND id = $2"
    ));
    let Some(row) = sqlx::query(sql)
        .bind(tenant)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(None);
    };
    let mut note = from_row(&row)?;
    note.lines = lines_of(conn, tenant, &[id]).await?.remove(id).unwrap_or_default();
    Ok(Some(note))
}

/// The lines of several credit notes in one query, by credit note.
async fn lines_of(
    conn: &mut AnyConnection,
    tenant: &str,
    ids: &[&str],
) -> Result<HashMap<String, Vec<CreditNoteLine>>, sqlx::Error> {
    let mut by_note: HashMap<String, Vec<CreditNoteLine>> = HashMap::new();
    if ids.is_empty() {
        return Ok(by_note);
    }
    let placeholders: Vec<String> = (0..ids.len()).map(|i| format!("${}", i + 2)).collect();
    let sql = format!(
        "SELECT credit_note_id, {LINE_COLUMNS} FROM credit_note_lines WHERE tenant_id = $1 AND credit_note_id IN ({}) \
         ORDER BY id",
        placeholders.join(", ")
    );
    let mut query = sqlx::query(AssertSqlSafe(sql)).bind(tenant);
    for id in ids {
        query = query.bind(*id);
    }
    for row in query.fetch_all(conn).await? {
        let note: String = get(&row, "credit_note_id")?;
        by_note.entry(note).or_default().push(line_from_row(&row)?);
    }
    Ok(by_note)
}

/// What the credit notes of `invoice_id` have credited so far, pre-tax and tax, by invoice line.
#[tracing::instrument(target = "otel", level = "debug", name = "db credit_notes.credited_lines", skip_all, fields(otel.kind = "client"))]
pub async fn credited_lines(
    conn: &mut AnyConnection,
    tenant: &str,
    invoice_id: &str,
) -> Result<HashMap<String, (i64, i64)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT l.invoice_line_id, CAST(SUM(l.amount) AS BIGINT) AS amount, CAST(SUM(l.tax) AS BIGINT) AS tax FROM credit_note_lines l \
         JOIN credit_notes n ON n.tenant_id = l.tenant_id AND n.id = l.credit_note_id \
         WHERE n.tenant_id = $1 AND n.invoice_id = $2 AND l.invoice_line_id IS NOT NULL GROUP BY l.invoice_line_id",
    )
    .bind(tenant)
    .bind(invoice_id)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| Ok((get(r, "invoice_line_id")?, (get(r, "amount")?, get(r, "tax")?))))
        .collect()
}

/// What the credit notes of `invoice_id` have refunded of its payments.
#[tracing::instrument(target = "otel", level = "debug", name = "db credit_notes.refunded", skip_all, fields(otel.kind = "client"))]
pub async fn refunded(conn: &mut AnyConnection, tenant: &str, invoice_id: &str) -> Result<i64, sqlx::Error> {
    let refunded: Option<i64> = sqlx::query_scalar(
        "SELECT CAST(SUM(refund_amount) AS BIGINT) FROM credit_notes WHERE tenant_id = $1 AND invoice_id = $2",
    )
    .bind(tenant)
    .bind(invoice_id)
    .fetch_one(conn)
    .await?;
    Ok(refunded.unwrap_or(0))
}

/// Which credit notes a listing shows.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub invoice: Option<String>,
    pub customer: Option<String>,
}

#[tracing::instrument(target = "otel", level = "debug", name = "db credit_notes.list", skip_all, fields(otel.kind = "client"))]
pub async fn list(
    conn: &mut AnyConnection,
    tenant: &str,
    page: &PageQuery,
    filter: &Filter,
) -> Result<Page<CreditNote>, PageError> {
    let filters = page::set([
        ("invoice_id", filter.invoice.as_deref()),
        ("customer_id", filter.customer.as_deref()),
    ]);
    let mut page = LISTING.fetch(conn, tenant, page, &filters, from_row).await?;
    let ids: Vec<&str> = page.data.iter().map(|n| n.id.as_str()).collect();
    let mut lines = lines_of(conn, tenant, &ids).await?;
    for note in &mut page.data {
        note.lines = lines.remove(&note.id).unwrap_or_default();
    }
    Ok(page)
}
