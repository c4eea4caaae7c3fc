//! The listener: accepts connections, one thread each, and stops on demand.

use std::collections::HashMap;
use std::io;
use std::net::{
    IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs,
};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::request::Request;
use crate::response::Response;

pub(crate) type Handler = dyn Fn(&Request) -> Response + Send + Sync + 'static;

/// Beyond this many open connections new ones are closed at once,
/// so a runaway client cannot exhaust threads.
const MAX_CONNECTIONS: usize = 1024;

/// Open connections, so stop() can shut them down and unblock their threads.
type Registry = Arc<Mutex<HashMap<u64, TcpStream>>>;

/// A running server; stops on `stop()` or when dropped.
pub struct Server {
    addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    accept_thread: Option<JoinHandle<()>>,
    conns: Registry,
}

impl Server {
    /// Binds `addr` (port 0 picks a free port) and serves each request with `handler`.
    pub fn bind<A: ToSocketAddrs>(
        addr: A,
        handler: impl Fn(&Request) -> Response + Send + Sync + 'static,
    ) -> io::Result<Server> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let stopping = Arc::new(AtomicBool::new(false));
        let conns: Registry = Arc::new(Mutex::new(HashMap::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let accept_thread = {
            let stopping = Arc::clone(&stopping);
            let conns = Arc::clone(&conns);
            thread::Builder::new()
                .name(format!("http-stub-{}", addr.port()))
                .spawn(move || accept_loop(listener, stopping, conns, handler))?
        };
        Ok(Server {
            addr,
            stopping,
            accept_thread: Some(accept_thread),
            conns,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, closes the port and open connections, and returns promptly.
    /// Handlers still running finish on their own; their answers are lost.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let Some(accept_thread) = self.accept_thread.take() else {
            return;
        };
        self.stopping.store(true, Ordering::SeqCst);
        // accept() blocks; a throwaway connection wakes it to see the flag.
        let woke =
            TcpStream::connect_timeout(&wake_addr(self.addr), Duration::from_secs(1)).is_ok();
        if woke {
            let _ = accept_thread.join();
        }
        for (_, stream) in lock(&self.conns).drain() {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// An address that reaches the listener even when bound to the unspecified address.
fn wake_addr(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port())
}

fn lock(conns: &Registry) -> MutexGuard<'_, HashMap<u64, TcpStream>> {
    // A poisoned map is still a valid map of streams.
    conns.lock().unwrap_or_else(|e| e.into_inner())
}

fn accept_loop(
    listener: TcpListener,
    stopping: Arc<AtomicBool>,
    conns: Registry,
    handler: Arc<Handler>,
) {
    let next_id = AtomicU64::new(0);
    // Ends when stop() sets the flag and wakes accept().
    while !stopping.load(Ordering::SeqCst) {
        let (stream, peer) = match listener.accept() {
            Ok(pair) => pair,
            Err(_) => {
                // e.g. out of file descriptors: back off instead of spinning.
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        if stopping.load(Ordering::SeqCst) {
            break;
        }
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut map = lock(&conns);
            if map.len() >= MAX_CONNECTIONS {
                continue;
            }
            match stream.try_clone() {
                Ok(clone) => map.insert(id, clone),
                Err(_) => continue,
            };
        }
        let conns_for_conn = Arc::clone(&conns);
        let handler = Arc::clone(&handler);
        let spawned = thread::Builder::new()
            .name(format!("http-stub-conn-{id}"))
            .spawn(move || {
                let _guard = Deregister {
                    conns: conns_for_conn,
                    id,
                };
                crate::conn::serve(stream, peer, &*handler);
            });
        if spawned.is_err() {
            lock(&conns).remove(&id);
        }
    }
}

/// Removes a connection from the registry however its thread ends (even by panic).
struct Deregister {
    conns: Registry,
    id: u64,
}

impl Drop for Deregister {
    fn drop(&mut self) {
        lock(&self.conns).remove(&self.id);
    }
}
