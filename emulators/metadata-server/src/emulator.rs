//! The running emulator: an http-stub server plus the knobs' Rust API.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use http_stub::Server;

use crate::handler;
use crate::state::{Mode, Shared};

/// A metadata-server emulator listening on a socket; stops on `stop()` or drop.
pub struct Emulator {
    server: Server,
    shared: Arc<Shared>,
}

impl Emulator {
    /// Listens on `addr` ("127.0.0.1:0" picks a free port); tokens live `lifetime_s`.
    pub fn start(addr: &str, lifetime_s: u64) -> io::Result<Emulator> {
        let shared = Arc::new(Shared::new(lifetime_s));
        let for_handler = Arc::clone(&shared);
        let server = Server::bind(addr, move |req| handler::handle(&for_handler, req))?;
        Ok(Emulator { server, shared })
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Lifetime of tokens minted from now on (capped at ten years).
    pub fn set_lifetime(&self, secs: u64) {
        self.shared.set_lifetime(secs);
    }

    /// The next `count` valid identity fetches answer `status` with a short body.
    /// Replaces any failures still pending.
    pub fn fail_next(&self, count: u32, status: u16) {
        self.shared.fail_next(count, status);
    }

    /// Delays every identity answer (zero for none; capped at ten minutes).
    pub fn set_delay(&self, delay: Duration) {
        self.shared.set_delay(delay);
    }

    pub fn set_mode(&self, mode: Mode) {
        self.shared.set_mode(mode);
    }

    /// Identity requests received for `audience`, whatever the answer.
    pub fn fetch_count(&self, audience: &str) -> u64 {
        self.shared.fetch_count(audience)
    }

    /// Identity requests received for any audience (including none).
    pub fn total_fetches(&self) -> u64 {
        self.shared.total_fetches()
    }

    /// Requests refused for a missing flavor header, X-Forwarded-For, or no audience.
    pub fn rejected_count(&self) -> u64 {
        self.shared.rejected_count()
    }

    /// Knobs back to their start values, counters to zero.
    pub fn reset(&self) {
        self.shared.reset();
    }

    /// One line per identity request on stderr (off by default, on in the binary).
    pub fn set_logging(&self, on: bool) {
        self.shared.logging.store(on, Ordering::Relaxed);
    }

    /// Stops serving and closes the port before returning.
    pub fn stop(self) {
        // Drop does the work: flag delayed handlers, then the server field stops.
        drop(self);
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        // Frees delayed handlers; the `server` field then stops itself on drop.
        self.shared.stopped.store(true, Ordering::Relaxed);
    }
}
