//! `hutch config`: the configuration in force, and where each value comes from.

use crate::cli::ConfigArgs;
use crate::config::Config;
use crate::error::Error;

/// Runs `hutch config`; returns the exit code.
pub async fn run(args: ConfigArgs) -> Result<u8, Error> {
    let cwd = std::env::current_dir().map_err(|e| Error::local("reading the current directory", e))?;
    let config = Config::load(&cwd)?;
    let json = config.to_json();
    if args.json {
        println!("{json}");
        return Ok(0);
    }
    let files: Vec<String> = config.files.iter().map(|f| f.display().to_string()).collect();
    println!("# files read: {}", if files.is_empty() { "none (built-in defaults)".to_owned() } else { files.join(", ") });
    if let Some(entries) = json.as_object() {
        for (key, entry) in entries.iter().filter(|(k, _)| *k != "files") {
            match entry {
                // Lists of rules: one line per entry, each with its source.
                serde_json::Value::Array(rules) => {
                    for rule in rules {
                        println!("{key} += {}    # {}", rule["pattern"], rule["source"].as_str().unwrap_or(""));
                    }
                }
                // Secrets by name: never a value, only where it comes from.
                serde_json::Value::Object(secrets) if key == "secrets" => {
                    for (name, secret) in secrets {
                        let from = match (&secret["from_env"], &secret["from_file"]) {
                            (serde_json::Value::String(var), _) => format!("from_env {var:?}"),
                            (_, file) => format!("from_file {file}"),
                        };
                        let mut scope = format!("hosts {}", secret["hosts"]);
                        for key in ["methods", "paths"] {
                            if let Some(list) = secret.get(key) {
                                scope.push_str(&format!(", {key} {list}"));
                            }
                        }
                        println!("secrets.{name} = {from}, {scope}    # {}", secret["source"].as_str().unwrap_or(""));
                    }
                }
                _ => println!("{key} = {}    # {}", entry["value"], entry["source"].as_str().unwrap_or("")),
            }
        }
    }
    Ok(0)
}
