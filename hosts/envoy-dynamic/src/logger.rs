//! Routes the core's `log` lines into Envoy's log under the `dynamic_modules` id.

use crate::abi;
use std::sync::Once;

struct EnvoyLog;

static LOGGER: EnvoyLog = EnvoyLog;
static INSTALL: Once = Once::new();

impl log::Log for EnvoyLog {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Info
    }
    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            log::Level::Error => abi::LOG_ERROR,
            log::Level::Warn => abi::LOG_WARN,
            log::Level::Info => abi::LOG_INFO,
            log::Level::Debug => abi::LOG_DEBUG,
            log::Level::Trace => abi::LOG_TRACE,
        };
        let text = record.args().to_string();
        // SAFETY: the buffer outlives the call; Envoy copies the message.
        unsafe {
            abi::envoy_dynamic_module_callback_log(level, abi::ModuleBuffer::of(text.as_bytes()))
        }
    }
    fn flush(&self) {}
}

/// Installs the logger once per process (the module is loaded once).
pub fn install() {
    INSTALL.call_once(|| {
        if log::set_logger(&LOGGER).is_ok() {
            log::set_max_level(log::LevelFilter::Info);
        }
    });
}
