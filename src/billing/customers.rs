use sqlx::AnyConnection;

use crate::domain::ids::{Kind, new_id};
use crate::domain::metadata::Metadata;
use crate::domain::money::Currency;
use crate::objects::Customer;
use crate::operation::{Ctx, Error, Result};
use crate::store::page::{Page, PageQuery};
use crate::store::{customers, ledger, subscriptions, tenants};

#[derive(Debug, Clone, Default)]
pub struct NewCustomer {
    pub name: Option<String>,
    pub email: Option<String>,
    pub currency: Option<Currency>,
    pub metadata: Metadata,
    /// The test clock the customer lives on.
    pub test_clock: Option<String>,
}

/// Fields to change; `None` leaves a field as it is. Metadata keys are merged.
#[derive(Debug, Clone, Default)]
pub struct CustomerUpdate {
    pub name: Option<String>,
    pub email: Option<String>,
    pub currency: Option<Currency>,
    pub metadata: Option<Metadata>,
}

pub async fn create(conn: &mut AnyConnection, ctx: &Ctx, input: NewCustomer) -> Result<Customer> {
    tenants::ensure(conn, &ctx.tenant, ctx.now).await?;
    // A customer on a test clock is created at the clock's time.
    let created = match &input.test_clock {
        Some(id) => super::test_clocks::get(conn, &ctx.tenant, id).await?.frozen_time,
        None => ctx.now,
    };
    let customer = Customer {
        id: new_id(Kind::Customer),
        object: Customer::OBJECT,
        name: input.name,
        email: input.email,
        currency: input.currency.map(Currency::code),
        metadata: input.metadata,
        test_clock: input.test_clock,
        created,
    };
    customers::insert(conn, &ctx.tenant, &customer).await?;
    ctx.audit(conn, "customer.created", &customer.id).await?;
    ctx.emit(conn, "customer.created", &customer).await?;
    Ok(customer)
}

pub async fn update(conn: &mut AnyConnection, ctx: &Ctx, id: &str, input: CustomerUpdate) -> Result<Customer> {
    let mut customer = get(conn, &ctx.tenant, id).await?;
    if let Some(currency) = input.currency {
        let code = currency.code();
        if customer.currency.as_ref().is_some_and(|c| *c != code) {
            let balances = ledger::balances(conn, &ctx.tenant, id).await?;
            if !balances.is_empty() {
                return Err(Error::invalid(
                    "currency",
                    "currency_locked",
                    "the customer already has ledger activity in another currency",
                ));
            }
        }
        // A subscription bills in its own currency; the customer's must stay that one.
        let subscribed = subscriptions::live_currencies(conn, &ctx.tenant, id).await?;
        if let Some(other) = subscribed.iter().find(|c| **c != code) {
            return Err(Error::invalid(
                "currency",
                "currency_locked",
                format!("the customer has a subscription billed in {other}"),
            ));
        }
        customer.currency = Some(code);
    }
    if let Some(name) = input.name {
        customer.name = Some(name);
    }
    if let Some(email) = input.email {
        customer.email = Some(email);
    }
    if let Some(metadata) = input.metadata {
        super::merge_metadata(&mut customer.metadata, metadata)?;
    }
    customers::update(conn, &ctx.tenant, &customer).await?;
    ctx.audit(conn, "customer.updated", &customer.id).await?;
    ctx.emit(conn, "customer.updated", &customer).await?;
    Ok(customer)
}

pub async fn get(conn: &mut AnyConnection, tenant: &str, id: &str) -> Result<Customer> {
    customers::find(conn, tenant, id)
        .await?
        .ok_or(Error::NotFound("customer"))
}

pub async fn list(conn: &mut AnyConnection, tenant: &str, page: &PageQuery) -> Result<Page<Customer>> {
    Ok(customers::list(conn, tenant, page).await?)
}
