//! Helpers shared by the end-to-end tests: run the binary, write configs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const TOKEN: &str = "s3cr3t-T0KEN-never-printed";

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(output: Output) -> Run {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

pub fn command(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chatdump"));
    cmd.args(args)
        .current_dir(dir)
        .env("CS_TOKEN", TOKEN)
        .env("WV_TOKEN", TOKEN)
        .env("UJET_USER", "acme")
        .env("UJET_PASSWORD", TOKEN)
        .env_remove("CHATDUMP_CONFIG")
        .env("XDG_CONFIG_HOME", dir.join("xdg"))
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    cmd
}

/// Runs the binary off the async runtime, so in-process servers keep serving.
pub async fn run(dir: &Path, args: &[&str]) -> Run {
    run_command(command(dir, args)).await
}

/// [`run`] for a command with more set on it (its environment).
pub async fn run_command(mut cmd: Command) -> Run {
    let output = tokio::task::spawn_blocking(move || cmd.output().expect("binary runs"))
        .await
        .unwrap();
    Run::from(output)
}

/// A temporary directory with a `chatdump.toml` holding one source `name`
/// of `kind` at `base_url`, its credentials in the variables [`command`]
/// sets, quick retries and no pacing to speak of, then `extra`: the one
/// configuration writer of every end-to-end test.
pub fn source_config(name: &str, kind: &str, base_url: &str, extra: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("chatdump.toml"),
        source_table(name, kind, base_url, extra),
    )
    .unwrap();
    dir
}

/// The `[sources.NAME]` table [`source_config`] writes, for a file with
/// several sources.
pub fn source_table(name: &str, kind: &str, base_url: &str, extra: &str) -> String {
    let credentials = match kind {
        "caresoft" => "token_env = \"CS_TOKEN\"",
        "ujet" => "username_env = \"UJET_USER\"\npassword_env = \"UJET_PASSWORD\"",
        _ => "token_env = \"WV_TOKEN\"",
    };
    format!(
        "[sources.{name}]\nkind = \"{kind}\"\nbase_url = \"{base_url}\"\n{credentials}\n\
         backoff = \"10ms\"\nrate_limit = 1000\n{extra}"
    )
}

/// Rewrites the `chatdump.toml` in `dir` through `edit`.
pub fn edit_config(dir: &Path, edit: impl FnOnce(String) -> String) {
    let file = dir.join("chatdump.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, edit(text)).unwrap();
}

/// One CareSoft source named `hanoi`, its tenant `acme` at `base`.
pub fn caresoft_config(base: &str, extra: &str) -> tempfile::TempDir {
    source_config("hanoi", "caresoft", &format!("{base}/acme"), extra)
}

/// The value of query parameter `key` of a request a fake received.
pub fn param(r: &wiremock::Request, key: &str) -> Option<String> {
    r.url
        .query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

pub fn fixture(name: &str) -> String {
    std::fs::read_to_string(repo().join("fixtures").join(name)).unwrap()
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Makes a FIFO at `path` (a planted one, or an output read as written).
#[cfg(unix)]
pub fn mkfifo(path: &std::path::Path) {
    let made = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo {}", path.display());
}

pub fn jsonl(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSONL line {l:?}: {e}")))
        .collect()
}

/// `export SOURCE --from 2024-03-01 --to 2024-03-02` plus `extra`: the one
/// day most CareSoft tests ask for.
pub async fn export_day(dir: &Path, source: &str, extra: &[&str]) -> Run {
    let mut args = vec![
        "export",
        source,
        "--from",
        "2024-03-01",
        "--to",
        "2024-03-02",
    ];
    args.extend_from_slice(extra);
    run(dir, &args).await
}

/// Waits up to `seconds` for `child` to exit (then kills it): its code, or
/// None when it had to be killed.
pub async fn wait_for_exit(mut child: std::process::Child, seconds: u64) -> Option<i32> {
    tokio::task::spawn_blocking(move || {
        for _ in 0..seconds * 10 {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    })
    .await
    .unwrap()
}

/// The values of `columns` in every row of a CSV text.
pub fn csv_columns(text: &str, columns: &[&str]) -> Vec<Vec<String>> {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers = reader.headers().unwrap().clone();
    let at: Vec<usize> = columns
        .iter()
        .map(|c| headers.iter().position(|h| h == *c).unwrap())
        .collect();
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            at.iter().map(|&i| r[i].to_string()).collect()
        })
        .collect()
}

/// Sends SIGTERM to `child`, as systemd or Kubernetes would.
pub fn sigterm(child: &std::process::Child) {
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

/// Asserts that `got` is `want`; on failure shows where they part, line by
/// line with a little context, instead of two walls of text.
pub fn assert_same_text(got: &str, want: &str) {
    if got == want {
        return;
    }
    let (g, w): (Vec<&str>, Vec<&str>) = (got.lines().collect(), want.lines().collect());
    let first = g
        .iter()
        .zip(&w)
        .position(|(a, b)| a != b)
        .unwrap_or(g.len().min(w.len()));
    let mut report = format!(
        "output differs from the expected file at line {} ({} lines, expected {}):\n",
        first + 1,
        g.len(),
        w.len()
    );
    for i in first.saturating_sub(2)..(first + 3).min(g.len().max(w.len())) {
        match (w.get(i), g.get(i)) {
            (Some(a), Some(b)) if a == b => report.push_str(&format!("  {:>4}   {a}\n", i + 1)),
            (a, b) => {
                if let Some(a) = a {
                    report.push_str(&format!("- {:>4}   {a}\n", i + 1));
                }
                if let Some(b) = b {
                    report.push_str(&format!("+ {:>4}   {b}\n", i + 1));
                }
            }
        }
    }
    panic!("{report}");
}
