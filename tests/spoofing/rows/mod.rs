//! The matrix's rows, one module per group of attacks; `rows()` keeps the order of the table.

mod bodies;
mod client_ip;
mod credentials;
mod identity;
mod key_routes;
mod paths;
mod trailers;
mod variants;
mod webhooks;

use crate::model::Row;

/// Every row, in the order docs/SECURITY.md lists them.
pub(crate) fn rows() -> Vec<Row> {
    let mut r = Vec::new();
    credentials::push(&mut r);
    identity::push(&mut r);
    client_ip::push(&mut r);
    paths::push(&mut r);
    bodies::push(&mut r);
    webhooks::push(&mut r);
    variants::push(&mut r);
    trailers::push(&mut r);
    key_routes::push(&mut r);
    r
}
