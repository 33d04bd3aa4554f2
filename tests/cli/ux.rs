//! The first five minutes: help, completions, man page, schema, init,
//! and a quiet stderr when it is not a terminal.

use serde_json::Value;

use crate::common::{jsonl, run};

#[tokio::test]
async fn help_is_grouped_and_ends_with_examples() {
    let dir = tempfile::tempdir().unwrap();
    let r = run(dir.path(), &["--help"]).await;
    assert_eq!(r.code, 0);
    for needle in [
        "Examples:",
        "chatdump demo",
        "-o chats.csv",
        "| jq",
        "--state",
        "export",
        "check",
        "schema",
        "init",
        "completions",
    ] {
        assert!(
            r.stdout.contains(needle),
            "help lacks {needle:?}:\n{}",
            r.stdout
        );
    }
    let r = run(dir.path(), &["export", "--help"]).await;
    assert_eq!(r.code, 0);
    for needle in ["--records", "--redact", "--follow", "--state", "Examples:"] {
        assert!(r.stdout.contains(needle), "export help lacks {needle:?}");
    }
    // clap's errors and ours read the same way: `error:` first.
    let clap = run(dir.path(), &["export", "x", "--records", "calls"]).await;
    let ours = run(dir.path(), &["export", "nowhere"]).await;
    assert!(clap.stderr.starts_with("error:"), "{}", clap.stderr);
    assert!(ours.stderr.starts_with("error:"), "{}", ours.stderr);
    assert!(
        !ours.stderr.contains('\x1b'),
        "no colour when stderr is not a terminal"
    );
}

#[tokio::test]
async fn completions_for_every_shell_and_a_man_page() {
    let dir = tempfile::tempdir().unwrap();
    for (shell, marker) in [
        ("bash", "complete"),
        ("zsh", "#compdef chatdump"),
        ("fish", "complete -c chatdump"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let r = run(dir.path(), &["completions", shell]).await;
        assert_eq!(r.code, 0, "{shell}: {}", r.stderr);
        assert!(r.stdout.contains(marker), "{shell} script lacks {marker:?}");
        assert!(r.stdout.contains("export"), "{shell} completes subcommands");
    }
    let r = run(dir.path(), &["man"]).await;
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains(".TH chatdump 1"));
}

#[tokio::test]
async fn every_record_every_source_writes_matches_the_schema() {
    let dir = tempfile::tempdir().unwrap();
    for (records, flag) in [("conversations", "conversations"), ("messages", "messages")] {
        let schema: Value = serde_json::from_str(
            &run(dir.path(), &["schema", "--records", flag, "--include-raw"])
                .await
                .stdout,
        )
        .unwrap();
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(&schema)
            .expect("a valid schema");
        let out = run(
            dir.path(),
            &["demo", "--records", records, "--include-raw", "-q"],
        )
        .await;
        assert_eq!(out.code, 0, "{}", out.stderr);
        let rows = jsonl(&out.stdout);
        let mut platforms: Vec<String> = rows
            .iter()
            .map(|r| r["platform"].as_str().unwrap().to_string())
            .collect();
        platforms.sort();
        platforms.dedup();
        // UJET's messages come from its transcripts.
        let expected: &[&str] = &["caresoft", "ujet", "wolkvox", "wolkvox-live"];
        assert_eq!(platforms, expected, "every source contributes");
        for row in &rows {
            let errors: Vec<String> = validator.iter_errors(row).map(|e| e.to_string()).collect();
            assert!(
                errors.is_empty(),
                "{records} row does not match: {errors:?}\n{row}"
            );
        }
        // And the schema can fail: a wrong type is caught.
        let mut broken = rows[0].clone();
        broken["source"] = Value::from(7);
        assert!(!validator.is_valid(&broken));
    }
    let schema: Value = serde_json::from_str(
        &run(dir.path(), &["schema", "--records", "messages"])
            .await
            .stdout,
    )
    .unwrap();
    assert_eq!(schema["properties"]["customer_phone"]["x-pii"], "customer");
    assert_eq!(schema["properties"]["agent_name"]["x-pii"], "agent");
}

#[tokio::test]
async fn init_writes_a_working_template_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let r = run(
        dir.path(),
        &["init", "--kind", "caresoft", "--kind", "ujet"],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let text = std::fs::read_to_string(dir.path().join("chatdump.toml")).unwrap();
    assert!(
        text.contains("kind = \"caresoft\"")
            && text.contains("kind = \"ujet\"")
            && !text.contains("kind = \"wolkvox\"")
    );
    let r = run(dir.path(), &["sources"]).await;
    assert!(
        r.stdout.contains("hanoi") && r.stdout.contains("support"),
        "{}",
        r.stdout
    );
    std::fs::write(dir.path().join("chatdump.toml"), "# mine\n").unwrap();
    let r = run(dir.path(), &["init"]).await;
    assert_eq!(r.code, 73, "{}", r.stderr);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("chatdump.toml")).unwrap(),
        "# mine\n"
    );
}

#[tokio::test]
async fn progress_never_appears_when_stderr_is_not_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let r = run(
        dir.path(),
        &["demo", "--records", "messages", "-o", "m.jsonl"],
    )
    .await;
    assert_eq!(r.code, 0);
    assert!(
        !r.stderr.contains('\r') && !r.stderr.contains('\x1b'),
        "{:?}",
        r.stderr
    );
    assert_eq!(
        r.stderr.lines().count(),
        1,
        "only the summary: {:?}",
        r.stderr
    );
    assert!(
        r.stderr.starts_with("demo: exported 42 messages"),
        "{}",
        r.stderr
    );
    let r = run(dir.path(), &["demo", "-q", "-o", "c.jsonl"]).await;
    assert!(
        r.stderr.is_empty(),
        "-q silences the summary: {:?}",
        r.stderr
    );
}

#[tokio::test]
async fn output_paths_can_hold_formatted_dates_for_partitioned_layouts() {
    let dir = tempfile::tempdir().unwrap();
    let r = run(
        dir.path(),
        &[
            "demo",
            "-q",
            "-o",
            "lake/{records}/dt={to:%Y-%m-%d}/{source}-{from:%Y%m%d}.jsonl",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let file = dir
        .path()
        .join("lake/conversations/dt=2024-03-08/demo-20240301.jsonl");
    assert!(
        file.is_file(),
        "{:?}",
        std::fs::read_dir(dir.path()).unwrap().collect::<Vec<_>>()
    );
    let bad = run(dir.path(), &["demo", "-o", "lake/{to:%Q}.jsonl"]).await;
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("strftime"), "{}", bad.stderr);
}
