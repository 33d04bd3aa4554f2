//! Trust boundaries end to end (a hostile server, a hostile directory):
//! redirects never carry a credential to another origin, outputs that are
//! not regular files are written in place, nothing is created through a
//! planted symlink, a state is validated before it is acted on, source
//! names stay plain, server text cannot drive the terminal.

use std::path::Path;

use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::common::{caresoft_config, export_day, run, TOKEN};

/// Redirects every request to the same path and query on `to`.
struct RedirectTo(String);

impl Respond for RedirectTo {
    fn respond(&self, r: &Request) -> ResponseTemplate {
        let query = r.url.query().map(|q| format!("?{q}")).unwrap_or_default();
        ResponseTemplate::new(302).insert_header(
            "Location",
            format!("{}{}{query}", self.0, r.url.path()).as_str(),
        )
    }
}

/// A configuration with one source of every kind, all at `base`.
fn every_kind(base: &str) -> tempfile::TempDir {
    use crate::common::source_table;
    let dir = tempfile::tempdir().unwrap();
    let retries = "max_retries = 1\n";
    let text = [
        source_table("hanoi", "caresoft", &format!("{base}/acme"), retries),
        source_table("bogota", "wolkvox", base, retries),
        source_table("live", "wolkvox-live", base, retries),
        source_table("support", "ujet", base, retries),
    ]
    .join("\n");
    std::fs::write(dir.path().join("chatdump.toml"), text).unwrap();
    dir
}

#[tokio::test]
async fn a_redirect_to_another_origin_is_never_followed_for_any_kind() {
    let elsewhere = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200).set_body_string("[]"))
        .mount(&elsewhere)
        .await;
    let port = elsewhere.address().port();
    // Another port on the same address, and the same port under another
    // host name: both are other origins.
    for target in [elsewhere.uri(), format!("http://localhost:{port}")] {
        let origin = MockServer::start().await;
        Mock::given(any())
            .respond_with(RedirectTo(target.clone()))
            .mount(&origin)
            .await;
        let dir = every_kind(&origin.uri());
        let d = dir.path();
        for source in ["hanoi", "bogota", "live", "support"] {
            let out = format!("{source}.jsonl");
            let r = run(
                d,
                &[
                    "export",
                    source,
                    "--from",
                    "2024-03-01",
                    "--to",
                    "2024-03-02",
                    "-o",
                    &out,
                    "--state",
                    "s.state",
                ],
            )
            .await;
            assert_ne!(r.code, 0, "{source} via {target}: {}", r.stderr);
            assert!(
                r.stderr.contains("another origin") && r.stderr.contains("base_url"),
                "{source}: {}",
                r.stderr
            );
            assert!(r.stderr.contains(&target), "names both URLs: {}", r.stderr);
            assert!(!d.join(&out).exists(), "{source}: nothing at the target");
            assert!(!d.join("s.state").exists(), "{source}: state unchanged");
            assert!(!r.stderr.contains(TOKEN));
            let r = run(d, &["check", source]).await;
            assert_ne!(r.code, 0, "check {source}: {}", r.stdout);
            assert!(r.stderr.contains("another origin"), "{}", r.stderr);
        }
    }
    let leaked = elsewhere.received_requests().await.unwrap();
    assert!(
        leaked.is_empty(),
        "the other origin was sent {} request(s), e.g. {:?}",
        leaked.len(),
        leaked.first().map(|r| (&r.url, &r.headers))
    );
}

/// Redirects to a path of its own origin, where the answer is.
struct MovedHere;

impl Respond for MovedHere {
    fn respond(&self, r: &Request) -> ResponseTemplate {
        if r.url.path().starts_with("/moved") {
            return ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "code": "ok", "numFound": 1,
                "chats": [{"conversation_id": "c1", "start_time": "2024-03-01 08:00:00"}]
            }));
        }
        let query = r.url.query().unwrap_or_default();
        ResponseTemplate::new(301).insert_header(
            "Location",
            format!("/moved{}?{query}", r.url.path()).as_str(),
        )
    }
}

#[tokio::test]
async fn a_redirect_within_the_origin_is_followed() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(MovedHere)
        .mount(&server)
        .await;
    let dir = caresoft_config(&server.uri(), "conversation_types = [\"livechat\"]\n");
    let r = export_day(dir.path(), "hanoi", &[]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("\"c1\""), "{}", r.stdout);
}

fn demo(dir: &Path, output: &str) -> crate::common::Run {
    let out = crate::common::command(dir, &["demo", "--records", "messages", "-o", output])
        .output()
        .unwrap();
    crate::common::Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[cfg(unix)]
#[test]
fn a_fifo_output_is_written_in_place_and_stays_a_fifo() {
    use std::os::unix::fs::FileTypeExt;
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe.jsonl");
    crate::common::mkfifo(&fifo);
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read_to_string(fifo).unwrap())
    };
    let r = demo(dir.path(), "pipe.jsonl");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let text = reader.join().unwrap();
    assert!(text.lines().count() > 5, "{text}");
    assert!(std::fs::symlink_metadata(&fifo)
        .unwrap()
        .file_type()
        .is_fifo());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temp left"
    );
}

/// A FIFO planted at a compressed output's name: written in place through
/// gzip, every line of the export reaches the reader as one valid gzip
/// stream (the writer's own buffer and the compressor both flushed), and
/// the FIFO stays a FIFO.
#[cfg(unix)]
#[test]
fn a_fifo_at_a_gz_output_gets_the_whole_compressed_export() {
    use std::io::Read;
    use std::os::unix::fs::FileTypeExt;
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe.jsonl.gz");
    crate::common::mkfifo(&fifo);
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let mut text = String::new();
            flate2::read::GzDecoder::new(std::fs::File::open(fifo).unwrap())
                .read_to_string(&mut text)
                .map(|_| text)
        })
    };
    let r = demo(dir.path(), "pipe.jsonl.gz");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let text = reader.join().unwrap().expect("one whole gzip stream");
    // As many whole JSON lines as the run says it exported.
    let said: usize = r
        .stderr
        .split("exported ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{}", r.stderr));
    assert!(said > 5, "{}", r.stderr);
    assert_eq!(crate::common::jsonl(&text).len(), said, "{text}");
    let plain = demo(dir.path(), "-");
    assert_eq!(text, plain.stdout, "the same lines as a plain export");
    assert!(std::fs::symlink_metadata(&fifo)
        .unwrap()
        .file_type()
        .is_fifo());
}

#[cfg(unix)]
#[test]
fn a_character_device_output_stays_a_device() {
    use std::os::unix::fs::FileTypeExt;
    let dir = tempfile::tempdir().unwrap();
    let node = dir.path().join("null");
    let made = std::process::Command::new("mknod")
        .args([node.to_str().unwrap(), "c", "1", "3"])
        .output();
    if !made.is_ok_and(|o| o.status.success()) {
        eprintln!("SKIPPED a_character_device_output_stays_a_device: mknod is not permitted here");
        return;
    }
    let r = demo(dir.path(), "null");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(std::fs::symlink_metadata(&node)
        .unwrap()
        .file_type()
        .is_char_device());
    // The stdout aliases are this process's stdout.
    for alias in ["/dev/stdout", "-"] {
        let r = demo(dir.path(), alias);
        assert_eq!(r.code, 0, "{alias}: {}", r.stderr);
        assert!(r.stdout.lines().count() > 5, "{alias}: {}", r.stdout);
    }
}

#[cfg(unix)]
#[test]
fn a_symlink_output_replaces_its_target_and_stays_a_link() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("real")).unwrap();
    let real = dir.path().join("real/out.jsonl");
    std::fs::write(&real, "old\n").unwrap();
    let link = dir.path().join("latest.jsonl");
    std::os::unix::fs::symlink("real/out.jsonl", &link).unwrap();
    let r = demo(dir.path(), "latest.jsonl");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
    let text = std::fs::read_to_string(&real).unwrap();
    assert!(!text.contains("old") && text.lines().count() > 5, "{text}");
    // No temp file left in either directory.
    assert_eq!(
        std::fs::read_dir(dir.path().join("real")).unwrap().count(),
        1
    );
}

/// A CareSoft with one readable and one unmappable chat (a rejected record).
async fn caresoft_with_a_reject() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "code": "ok", "numFound": 2,
            "chats": [{"conversation_id": "c1", "start_time": "2024-03-01 08:00:00"}, 42]
        })))
        .mount(&server)
        .await;
    server
}

#[cfg(unix)]
#[tokio::test]
async fn planted_symlinks_at_the_lock_and_the_rejects_are_not_followed() {
    let server = caresoft_with_a_reject().await;
    let dir = caresoft_config(&server.uri(), "conversation_types = [\"livechat\"]\n");
    let d = dir.path();
    let victim = d.join("victim");
    std::fs::write(&victim, "precious").unwrap();
    std::os::unix::fs::symlink(&victim, d.join("h.state.lock")).unwrap();
    let r = export_day(d, "hanoi", &["--state", "h.state", "-o", "a.jsonl"]).await;
    assert_eq!(r.code, 73, "{}", r.stderr);
    assert!(r.stderr.contains("symbolic link"), "{}", r.stderr);
    std::fs::remove_file(d.join("h.state.lock")).unwrap();
    std::os::unix::fs::symlink(&victim, d.join("h.state.rejects.jsonl")).unwrap();
    let r = export_day(d, "hanoi", &["--state", "h.state", "-o", "b.jsonl"]).await;
    assert_eq!(r.code, 73, "{}", r.stderr);
    assert!(!d.join("h.state").exists(), "not committed");
    std::os::unix::fs::symlink(&victim, d.join("c.jsonl.rejects.jsonl")).unwrap();
    let r = export_day(d, "hanoi", &["-o", "c.jsonl"]).await;
    assert_eq!(r.code, 73, "{}", r.stderr);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
}

#[tokio::test]
async fn a_stale_temp_of_a_dead_run_is_removed() {
    let server = caresoft_with_a_reject().await;
    let dir = caresoft_config(&server.uri(), "conversation_types = [\"livechat\"]\n");
    let d = dir.path();
    let stale = d.join(".out.jsonl.tmp-2000000000");
    std::fs::write(&stale, "half a file").unwrap();
    let state_stale = d.join(".h.state.tmp-2000000001");
    std::fs::write(&state_stale, "{").unwrap();
    let r = export_day(d, "hanoi", &["-o", "out.jsonl", "--state", "h.state"]).await;
    assert_eq!(r.code, 65, "one rejected record: {}", r.stderr);
    assert!(d.join("out.jsonl").exists());
    assert!(!stale.exists() && !state_stale.exists());
}

#[tokio::test]
async fn a_planted_pending_rename_is_refused_and_moves_nothing() {
    let dir = caresoft_config("http://127.0.0.1:9", "");
    let d = dir.path();
    let victim = d.join("victim.txt");
    std::fs::write(&victim, "precious").unwrap();
    let state = serde_json::json!({
        "version": 2, "source": "hanoi", "kind": "caresoft", "records": "conversations",
        "checkpoint": "2024-03-01T00:00:00Z", "recent": [], "ledger": [],
        "pending": {"temp": victim, "target": d.join("moved.txt")}
    });
    std::fs::write(d.join("h.state"), state.to_string()).unwrap();
    let r = run(
        d,
        &["export", "hanoi", "--state", "h.state", "-o", "x.jsonl"],
    )
    .await;
    assert_eq!(r.code, 78, "{}", r.stderr);
    assert!(r.stderr.contains("pending"), "{}", r.stderr);
    assert!(victim.exists() && !d.join("moved.txt").exists());
}

#[tokio::test]
async fn a_source_name_that_climbs_out_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("chatdump.toml"),
        "[sources.\"../../etc/evil\"]\nkind = \"caresoft\"\ndomain = \"x\"\ntoken_env = \"CS_TOKEN\"\n",
    )
    .unwrap();
    let r = run(
        dir.path(),
        &["export", "../../etc/evil", "-o", "out/{source}.jsonl"],
    )
    .await;
    assert_eq!(r.code, 78, "{}", r.stderr);
    assert!(
        r.stderr.contains("chatdump.toml") && r.stderr.contains("../../etc/evil"),
        "{}",
        r.stderr
    );
    assert!(!dir.path().join("out").exists());
}

#[tokio::test]
async fn server_text_is_escaped_and_an_echoed_token_masked() {
    let server = MockServer::start().await;
    let body = format!(
        "{{\"code\":\"errors\",\"message\":\"bad \\u001b[2J\\u001b]0;pwned\\u0007 token {TOKEN}\"}}"
    );
    Mock::given(any())
        .respond_with(ResponseTemplate::new(401).set_body_string(body))
        .mount(&server)
        .await;
    let dir = caresoft_config(&server.uri(), "conversation_types = [\"livechat\"]\n");
    let r = export_day(dir.path(), "hanoi", &["-vvv"]).await;
    assert_ne!(r.code, 0);
    assert!(
        !r.stderr.contains('\u{1b}') && !r.stderr.contains('\u{7}'),
        "{:?}",
        r.stderr
    );
    assert!(r.stderr.contains("\\u{1b}[2J"), "{}", r.stderr);
    assert!(!r.stderr.contains(TOKEN), "{}", r.stderr);
    assert!(r.stderr.contains("token ***"), "{}", r.stderr);
}

#[tokio::test]
async fn sources_never_shows_user_info() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("chatdump.toml"),
        "[sources.p]\nkind = \"caresoft\"\nbase_url = \"https://proxyuser:pr0xy-pass@proxy.example/acme\"\ntoken_env = \"CS_TOKEN\"\n",
    )
    .unwrap();
    let r = run(dir.path(), &["sources"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("https://proxy.example/acme"),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("pr0xy-pass") && !r.stdout.contains("proxyuser"));
}

#[tokio::test]
async fn an_output_over_the_states_own_files_is_refused() {
    let dir = caresoft_config("http://127.0.0.1:9", "");
    let d = dir.path();
    for output in ["h.state", "h.state.lock", "./sub/../h.state.rejects.jsonl"] {
        let r = run(
            d,
            &[
                "export", "hanoi", "--state", "h.state", "-o", output, "--since", "1h",
            ],
        )
        .await;
        assert_eq!(r.code, 2, "{output}: {}", r.stderr);
        assert!(r.stderr.contains("state"), "{}", r.stderr);
    }
    assert!(!d.join("h.state").exists());
}

#[tokio::test]
async fn check_reports_every_source_and_exits_with_the_worst_code() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"code": "ok", "numFound": 0, "chats": []})),
        )
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("chatdump.toml"),
        format!(
            "[sources.a-missing]\nkind = \"caresoft\"\ndomain = \"x\"\ntoken_env = \"CHATDUMP_TEST_NOT_SET\"\n\
             [sources.b-ok]\nkind = \"caresoft\"\nbase_url = \"{}/acme\"\ntoken_env = \"CS_TOKEN\"\n",
            server.uri()
        ),
    )
    .unwrap();
    let r = run(dir.path(), &["check"]).await;
    assert!(r.stdout.contains("a-missing: FAILED"), "{}", r.stdout);
    assert!(
        r.stdout.contains("b-ok: ok"),
        "every source is checked: {}",
        r.stdout
    );
    assert_eq!(r.code, 78, "{}", r.stderr);
    assert!(r.stderr.contains("1 of 2 checks failed"), "{}", r.stderr);
}

/// Redirects to itself, forever: followed at most five times, then refused.
struct RedirectLoop;

impl Respond for RedirectLoop {
    fn respond(&self, r: &Request) -> ResponseTemplate {
        let query = r.url.query().unwrap_or_default();
        ResponseTemplate::new(307)
            .insert_header("Location", format!("{}?{query}", r.url.path()).as_str())
    }
}

#[tokio::test]
async fn a_same_origin_redirect_loop_ends() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(RedirectLoop)
        .mount(&server)
        .await;
    let dir = caresoft_config(&server.uri(), "conversation_types = [\"livechat\"]\n");
    let r = export_day(dir.path(), "hanoi", &["-o", "o.jsonl"]).await;
    assert_eq!(r.code, 69, "{}", r.stderr);
    assert!(r.stderr.contains("more than 5 redirects"), "{}", r.stderr);
    assert_eq!(
        server.received_requests().await.unwrap().len(),
        6,
        "one request, five hops"
    );
    assert!(!dir.path().join("o.jsonl").exists());
}

/// A FIFO planted where the state or the rejects log goes would block a
/// read or an open forever: refused at once instead.
#[cfg(unix)]
#[tokio::test]
async fn a_fifo_planted_at_the_state_or_the_rejects_is_refused_not_waited_on() {
    let server = caresoft_with_a_reject().await;
    let dir = caresoft_config(&server.uri(), "conversation_types = [\"livechat\"]\n");
    let d = dir.path();
    for planted in ["h.state", "h.state.rejects.jsonl"] {
        let fifo = d.join(planted);
        crate::common::mkfifo(&fifo);
        let child = crate::common::command(
            d,
            &[
                "export",
                "hanoi",
                "--from",
                "2024-03-01",
                "--to",
                "2024-03-02",
                "--state",
                "h.state",
                "-o",
                "o.jsonl",
            ],
        )
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
        let code = crate::common::wait_for_exit(child, 20).await;
        assert_eq!(code, Some(73), "{planted}: exits at once (None: it hung)");
        assert!(!d.join("o.jsonl").exists(), "{planted}: nothing published");
        std::fs::remove_file(&fifo).unwrap();
    }
}

/// Whether this process runs as root, which the ownership cases need (to
/// plant another user's file); CI runs as root.
#[cfg(unix)]
fn as_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Plants `text` at `path` as `nobody`'s file, readable and writable by
/// all.
#[cfg(unix)]
fn plant_as_nobody(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::os::unix::fs::chown(path, Some(65534), Some(65534)).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666)).unwrap();
}

/// Files another user planted where chatdump writes: a rejects log and an
/// output owned by `nobody` (0666) are replaced by files of chatdump's own,
/// owner-only, never filled in place; a rejects log hard-linked to another
/// file never writes into that file; a state's rejects history, a lock
/// not its own, are refused (73) with the state not advanced.
#[cfg(unix)]
#[tokio::test]
async fn files_of_another_user_or_with_other_links_are_never_written_in_place() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    if !as_root() {
        eprintln!("SKIPPED: planting another user's files needs root (CI runs as root)");
        return;
    }
    let server = caresoft_with_a_reject().await;
    let dir = caresoft_config(&server.uri(), "conversation_types = [\"livechat\"]\n");
    let d = dir.path();
    let mine = |path: &Path| {
        let m = std::fs::metadata(path).unwrap();
        (m.uid(), m.permissions().mode() & 0o777, m.nlink())
    };

    plant_as_nobody(&d.join("a.jsonl"), "planted output\n");
    plant_as_nobody(&d.join("a.jsonl.rejects.jsonl"), "planted rejects\n");
    let r = export_day(d, "hanoi", &["-o", "a.jsonl"]).await;
    assert_eq!(r.code, 65, "one rejected record: {}", r.stderr);
    assert_eq!(mine(&d.join("a.jsonl")), (0, 0o600, 1), "output of its own");
    assert_eq!(
        mine(&d.join("a.jsonl.rejects.jsonl")),
        (0, 0o600, 1),
        "rejects of its own"
    );
    let rejects = std::fs::read_to_string(d.join("a.jsonl.rejects.jsonl")).unwrap();
    assert!(!rejects.contains("planted"), "replaced, not appended to");

    let victim = d.join("victim");
    std::fs::write(&victim, "precious").unwrap();
    std::fs::hard_link(&victim, d.join("b.jsonl.rejects.jsonl")).unwrap();
    let r = export_day(d, "hanoi", &["-o", "b.jsonl"]).await;
    assert_eq!(r.code, 65, "{}", r.stderr);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");

    plant_as_nobody(&d.join("h.state.rejects.jsonl"), "");
    let r = export_day(d, "hanoi", &["--state", "h.state", "-o", "c.jsonl"]).await;
    assert_eq!(r.code, 73, "{}", r.stderr);
    assert!(r.stderr.contains("another user"), "{}", r.stderr);
    assert!(!d.join("h.state").exists(), "not committed");
    assert_eq!(
        std::fs::read_to_string(d.join("h.state.rejects.jsonl")).unwrap(),
        ""
    );
    std::fs::remove_file(d.join("h.state.rejects.jsonl")).unwrap();

    plant_as_nobody(&d.join("h.state.lock"), "");
    let r = export_day(d, "hanoi", &["--state", "h.state", "-o", "c.jsonl"]).await;
    assert_eq!(r.code, 73, "{}", r.stderr);
    assert!(!d.join("h.state").exists(), "not committed");
}

/// A state given as a symlink is refused: its lock and temporaries would
/// be made beside the link's target, in a directory nobody named.
#[cfg(unix)]
#[tokio::test]
async fn a_state_that_is_a_symlink_is_refused_and_nothing_made_beside_its_target() {
    let server = caresoft_with_a_reject().await;
    let dir = caresoft_config(&server.uri(), "conversation_types = [\"livechat\"]\n");
    let d = dir.path();
    let elsewhere = tempfile::tempdir().unwrap();
    let target = elsewhere.path().join("real.state");
    std::os::unix::fs::symlink(&target, d.join("h.state")).unwrap();
    let r = export_day(d, "hanoi", &["--state", "h.state", "-o", "a.jsonl"]).await;
    assert_eq!(r.code, 73, "{}", r.stderr);
    assert!(r.stderr.contains("symbolic link"), "{}", r.stderr);
    assert_eq!(
        std::fs::read_dir(elsewhere.path()).unwrap().count(),
        0,
        "nothing made beside the link's target"
    );
    assert!(!d.join("a.jsonl").exists());
}
