//! `bcsp-guard`: the operator's tool for the bcsp-guard filter. Every check runs the filter's
//! own core (the `bcsp-guard` library), so what it accepts, refuses and explains is exactly
//! what the filter in Envoy does.

mod args;
mod check;
mod envoy;
mod explain;
mod ipranges;
mod keygen;

use std::process::ExitCode;

const USAGE: &str = "\
bcsp-guard — operator tool for the bcsp-guard Envoy filter

USAGE:
  bcsp-guard keygen --id ID [--header NAME] [--scheme WORD] [--not-before T] [--not-after T] [--json]
      A fresh 256-bit secret for the Genesys integration's Credentials tab, and the `keys`
      entry (its SHA-256) for the filter configuration. T is RFC 3339, e.g. 2027-01-15T00:00:00Z.
  bcsp-guard check FILE [--env NAME=VALUE]...
      Validate a filter configuration (JSON), or every bcsp-guard filter inside an Envoy YAML,
      with the filter's own validation and messages. Exit status 1 on any error.
  bcsp-guard ipranges FILE --region R [--region R]... [--service S]...
      The `genesys_ip_ranges` snippet from a saved `GET /api/v2/ipranges` response (FILE, or -
      for standard input). --service defaults to bot-connector.
  bcsp-guard explain CONFIG --method M --path P [--header 'name: value']... [--client-ip IP]
                     [--at T] [--body TEXT | --body-file FILE] [--env NAME=VALUE]...
      What the filter would do with that request, and why. Secrets are never printed.
      Exit status 0 when the request would be forwarded, 2 when it would be refused.
";

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = argv.split_first() else {
        eprint!("{USAGE}");
        return ExitCode::from(1);
    };
    let result = match command.as_str() {
        "keygen" => keygen::run(rest),
        "check" => check::run(rest),
        "ipranges" => ipranges::run(rest),
        "explain" => explain::run(rest),
        "help" | "--help" | "-h" => {
            print!("{USAGE}");
            Ok(0)
        }
        other => Err(format!(
            "unknown command `{other}`; try `bcsp-guard --help`"
        )),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(message) => {
            eprintln!("bcsp-guard: {message}");
            ExitCode::from(1)
        }
    }
}
