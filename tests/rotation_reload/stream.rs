//! The client: a steady stream of valid requests with Genesys's current secret, each one
//! recorded with the step of the walk-through it was sent in.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::harness::request;
use crate::{NEW_SECRET, OLD_SECRET, WAIT};

/// Pause between two requests of the stream.
const STREAM_EVERY: Duration = Duration::from_millis(20);

/// What Genesys's credential field holds.
pub const USING_OLD: u8 = 0;
pub const USING_NEW: u8 = 1;

#[derive(Clone, Debug)]
pub struct Sent {
    pub seq: u64,
    /// The step of the walk-through that was under way.
    pub step: char,
    pub secret: u8,
    /// Status, or the I/O error.
    pub result: Result<u16, String>,
}

pub struct Stream {
    stop: Arc<AtomicBool>,
    pub secret: Arc<AtomicU8>,
    step: Arc<Mutex<char>>,
    sent: Arc<Mutex<Vec<Sent>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Stream {
    pub fn start(addr: SocketAddr) -> Stream {
        let stop = Arc::new(AtomicBool::new(false));
        let secret = Arc::new(AtomicU8::new(USING_OLD));
        let step = Arc::new(Mutex::new('a'));
        let sent = Arc::new(Mutex::new(Vec::new()));
        let (s, c, p, log) = (stop.clone(), secret.clone(), step.clone(), sent.clone());
        let thread = std::thread::spawn(move || {
            let mut seq = 0u64;
            while !s.load(Ordering::SeqCst) {
                seq += 1;
                let using = c.load(Ordering::SeqCst);
                let step = *p.lock().unwrap();
                let value = if using == USING_NEW {
                    NEW_SECRET
                } else {
                    OLD_SECRET
                };
                let result = request("GET", &format!("/bots?seq={seq}"))
                    .to(addr)
                    .header("x-bcsp-key", value)
                    .header("x-request-id", &format!("stream-{seq}"))
                    .try_send()
                    .map(|r| r.status)
                    .map_err(|e| e.to_string());
                log.lock().unwrap().push(Sent {
                    seq,
                    step,
                    secret: using,
                    result,
                });
                std::thread::sleep(STREAM_EVERY);
            }
        });
        Stream {
            stop,
            secret,
            step,
            sent,
            thread: Some(thread),
        }
    }

    pub fn step(&self, step: char) {
        *self.step.lock().unwrap() = step;
    }

    fn sent(&self) -> Vec<Sent> {
        self.sent.lock().unwrap().clone()
    }

    /// Requests completed so far with `secret`.
    pub fn completed_with(&self, secret: u8) -> usize {
        self.sent
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.secret == secret)
            .count()
    }

    /// Bounded wait until `n` more requests completed with `secret`.
    pub fn wait_for(&self, secret: u8, n: usize) {
        let target = self.completed_with(secret) + n;
        let deadline = Instant::now() + WAIT;
        while self.completed_with(secret) < target {
            assert!(
                Instant::now() < deadline,
                "the stream stalled: {:?}",
                self.sent().last()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn finish(mut self) -> Vec<Sent> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().expect("stream thread panicked");
        }
        self.sent()
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
