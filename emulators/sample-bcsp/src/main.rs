//! `sample-bcsp --listen 127.0.0.1:8080 --base-path /botconnector`: serves until killed.

use std::io::Write;
use std::process::ExitCode;
use std::thread;
use std::time::Duration;

use sample_bcsp::{App, DEFAULT_BASE_PATH, DEFAULT_LISTEN};

const USAGE: &str = "usage: sample-bcsp [--listen ADDR] [--base-path PATH]
  --listen ADDR      address to listen on (default 127.0.0.1:8080)
  --base-path PATH   Digital Bot Connector base path (default /botconnector)
serves GET PATH/bots, GET PATH/bots/{botId}, POST PATH/messages and GET /healthz;
logs one line per request to stderr";

#[derive(Debug, PartialEq, Eq)]
struct Args {
    listen: String,
    base_path: String,
}

#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    Run(Args),
    Help,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Parsed, String> {
    let mut out = Args {
        listen: DEFAULT_LISTEN.into(),
        base_path: DEFAULT_BASE_PATH.into(),
    };
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg, None),
        };
        if flag == "-h" || flag == "--help" {
            return Ok(Parsed::Help);
        }
        let slot = match flag.as_str() {
            "--listen" => &mut out.listen,
            "--base-path" => &mut out.base_path,
            _ => return Err(format!("unknown argument {flag:?}")),
        };
        match inline.or_else(|| args.next()) {
            Some(v) if !v.is_empty() => *slot = v,
            _ => return Err(format!("{flag} needs a value")),
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
            eprintln!("sample-bcsp: {why}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let app = match App::new(&args.base_path) {
        Ok(app) => app,
        Err(why) => {
            eprintln!("sample-bcsp: --base-path: {why}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let base = app.base_path().to_string();
    let server = match sample_bcsp::start(&args.listen, app, true) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sample-bcsp: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    println!(
        "sample-bcsp listening on http://{} (base path {base})",
        server.local_addr()
    );
    // Whoever started us may wait for this line; do not leave it in a buffer.
    let _ = std::io::stdout().flush();
    // The server's threads do the work; this one stays alive until the process is killed.
    loop {
        thread::sleep(Duration::from_secs(3600));
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_args, Args, Parsed};

    fn parse(args: &[&str]) -> Result<Parsed, String> {
        parse_args(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn defaults() {
        assert_eq!(
            parse(&[]),
            Ok(Parsed::Run(Args {
                listen: "127.0.0.1:8080".into(),
                base_path: "/botconnector".into()
            }))
        );
    }

    #[test]
    fn both_flag_forms() {
        let want = Ok(Parsed::Run(Args {
            listen: "127.0.0.1:9".into(),
            base_path: "/x".into(),
        }));
        assert_eq!(
            parse(&["--listen", "127.0.0.1:9", "--base-path", "/x"]),
            want
        );
        assert_eq!(parse(&["--listen=127.0.0.1:9", "--base-path=/x"]), want);
    }

    #[test]
    fn help() {
        assert_eq!(parse(&["--help"]), Ok(Parsed::Help));
        assert_eq!(parse(&["-h"]), Ok(Parsed::Help));
    }

    #[test]
    fn bad_flags_are_errors() {
        assert!(parse(&["--port", "1"]).is_err());
        assert!(parse(&["--listen"]).is_err());
        assert!(parse(&["--base-path="]).is_err());
        assert!(parse(&["extra"]).is_err());
    }
}
