//! A small command-line parser: positionals, `--opt value` / `--opt=value` (repeatable) and
//! `--flag`. Unknown options are errors, so a typo never silently changes the meaning.

pub struct Args {
    pub positional: Vec<String>,
    options: Vec<(String, String)>,
    flags: Vec<String>,
}

impl Args {
    pub fn parse(argv: &[String], with_value: &[&str], flags: &[&str]) -> Result<Args, String> {
        let mut out = Args {
            positional: Vec::new(),
            options: Vec::new(),
            flags: Vec::new(),
        };
        let mut it = argv.iter();
        while let Some(arg) = it.next() {
            let Some(name) = arg.strip_prefix("--") else {
                out.positional.push(arg.clone());
                continue;
            };
            let (name, inline) = match name.split_once('=') {
                Some((n, v)) => (n, Some(v.to_owned())),
                None => (name, None),
            };
            if flags.contains(&name) && inline.is_none() {
                out.flags.push(name.to_owned());
            } else if with_value.contains(&name) {
                let value = match inline {
                    Some(v) => v,
                    None => it
                        .next()
                        .cloned()
                        .ok_or_else(|| format!("--{name} needs a value"))?,
                };
                out.options.push((name.to_owned(), value));
            } else {
                return Err(format!("unknown option --{name}"));
            }
        }
        Ok(out)
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.options
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The option's value; an error if it was given more than once.
    pub fn one(&self, name: &str) -> Result<Option<&str>, String> {
        match self.all(name).as_slice() {
            [] => Ok(None),
            [v] => Ok(Some(v)),
            _ => Err(format!("--{name} may be given only once")),
        }
    }

    pub fn required(&self, name: &str) -> Result<&str, String> {
        self.one(name)?
            .ok_or_else(|| format!("--{name} is required"))
    }

    pub fn flag(&self, name: &str) -> bool {
        self.flags.iter().any(|f| f == name)
    }

    /// Exactly one positional argument, named `what` in the error.
    pub fn single_positional(&self, what: &str) -> Result<&str, String> {
        match self.positional.as_slice() {
            [one] => Ok(one),
            [] => Err(format!("{what} is required")),
            more => Err(format!(
                "expected one {what}, got {}: {}",
                more.len(),
                more.join(" ")
            )),
        }
    }

    /// `--env NAME=VALUE` pairs.
    pub fn env_pairs(&self) -> Result<Vec<(String, String)>, String> {
        self.all("env")
            .into_iter()
            .map(|p| {
                p.split_once('=')
                    .filter(|(n, _)| !n.is_empty())
                    .map(|(n, v)| (n.to_owned(), v.to_owned()))
                    .ok_or_else(|| format!("--env expects NAME=VALUE, got `{p}`"))
            })
            .collect()
    }
}

/// Reads a file, or standard input for `-`.
pub fn read_input(path: &str) -> Result<Vec<u8>, String> {
    if path == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
            .map_err(|e| format!("cannot read standard input: {e}"))?;
        return Ok(buf);
    }
    std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))
}
