//! A tiny std-only HTTP/1.1 server for bcsp-guard's emulators and end-to-end tests.
//!
//! One thread per connection, keep-alive, Content-Length and chunked request bodies,
//! bounded sizes and timeouts. Every response carries a Content-Length.
//!
//! ```no_run
//! use http_stub::{Response, Server};
//! # fn main() -> std::io::Result<()> {
//! let server = Server::bind("127.0.0.1:0", |req| Response::text(200, req.path()))?;
//! println!("listening on {}", server.local_addr());
//! server.stop();
//! # Ok(())
//! # }
//! ```

mod conn;
mod parse;
mod request;
mod response;
mod server;

pub use request::Request;
pub use response::Response;
pub use server::Server;

#[cfg(test)]
mod tests;
