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
    let mut cmd = command(dir, args);
    let output = tokio::task::spawn_blocking(move || cmd.output().expect("binary runs"))
        .await
        .unwrap();
    Run::from(output)
}

/// A temporary directory with a `chatdump.toml` holding one CareSoft source
/// named `hanoi` pointed at `base`.
pub fn caresoft_config(base: &str, extra: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[sources.hanoi]\nkind = \"caresoft\"\nbase_url = \"{base}/acme\"\ntoken_env = \"CS_TOKEN\"\n\
         backoff = \"10ms\"\nrate_limit = 1000\n{extra}"
    );
    std::fs::write(dir.path().join("chatdump.toml"), text).unwrap();
    dir
}

pub fn fixture(name: &str) -> String {
    std::fs::read_to_string(repo().join("fixtures").join(name)).unwrap()
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn jsonl(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSONL line {l:?}: {e}")))
        .collect()
}
