//! `metadata-emulator --listen 127.0.0.1:8081 --lifetime 3600`: serves until killed.

use std::io::Write;
use std::process::ExitCode;
use std::thread;
use std::time::Duration;

use metadata_emulator::Emulator;

const USAGE: &str = "usage: metadata-emulator [--listen ADDR] [--lifetime SECONDS]
  --listen ADDR        address to listen on (default 127.0.0.1:8081)
  --lifetime SECONDS   token lifetime (default 3600)
control: POST /_emulator/{fail?count=K&status=S, delay?ms=N, lifetime?s=N,
         mode?m=normal|garbage|expired|down, reset}; GET /_emulator/stats, /healthz";

struct Args {
    listen: String,
    lifetime_s: u64,
}

enum Parsed {
    Run(Args),
    Help,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Parsed, String> {
    let mut out = Args {
        listen: "127.0.0.1:8081".into(),
        lifetime_s: 3600,
    };
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg, None),
        };
        if flag == "-h" || flag == "--help" {
            return Ok(Parsed::Help);
        }
        if flag != "--listen" && flag != "--lifetime" {
            return Err(format!("unknown argument {flag:?}"));
        }
        let value = match inline.or_else(|| args.next()) {
            Some(v) => v,
            None => return Err(format!("{flag} needs a value")),
        };
        if flag == "--listen" {
            out.listen = value;
        } else {
            out.lifetime_s = value
                .parse()
                .map_err(|_| format!("--lifetime: not a number of seconds: {value:?}"))?;
        }
    }
    Ok(Parsed::Run(out))
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Parsed::Run(a)) => a,
        Ok(Parsed::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(why) => {
            eprintln!("metadata-emulator: {why}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let emulator = match Emulator::start(&args.listen, args.lifetime_s) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("metadata-emulator: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    emulator.set_logging(true);
    println!(
        "metadata-emulator listening on http://{} (token lifetime {}s)",
        emulator.addr(),
        args.lifetime_s
    );
    // Whoever started us waits for this line; do not leave it in a buffer.
    let _ = std::io::stdout().flush();
    // Serving happens on the server's threads; this one just stays alive until
    // the process is killed, which is the binary's whole contract.
    loop {
        thread::sleep(Duration::from_secs(3600));
    }
}
