//! Attachments end to end: a media server on 127.0.0.1 (reached only
//! through `attachment_hosts`) behind CareSoft file objects, Wolkvox inline
//! images and links, and UJET files beside transcripts; every way a file
//! can fail to come, a redirect into the private network, a run killed
//! mid-download, and `--redact`.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common::{caresoft_config, command, export_day, jsonl, run, TOKEN};

const MESSAGES: &str = "/acme/api/v1/chats/messages";
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01pixels";
const JPEG: &[u8] = b"\xff\xd8\xff\xe0\0\x10JFIF\0a-photo";

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Where a file with these bytes is kept, relative to DEST.
fn kept_at(bytes: &[u8], extension: &str) -> String {
    let hash = sha256(bytes);
    format!("sha256/{}/{hash}.{extension}", &hash[..2])
}

/// Every file under `dir`, relative to it, sorted.
fn files_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(at) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&at) else {
            continue;
        };
        for entry in entries.flatten() {
            let p = entry.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                found.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    found.sort();
    found
}

/// A CareSoft message carrying a file object at `url`, in chat `chat`.
fn carrying(n: usize, chat: &str, url: &str, declared: Option<&str>) -> Value {
    let mut content = json!({"type": "image", "url": url, "name": format!("foto {n}.png")});
    if let Some(t) = declared {
        content["mime_type"] = json!(t);
    }
    json!({"conversation_id": chat, "conversation_type": 0, "id": 1000 + n, "msg_id": format!("m{n}"),
           "message_index": n, "type": 2, "content": content,
           "time": format!("2024-03-01 10:00:{n:02}"), "start_time": "2024-03-01 10:00:00",
           "sender_visitor_id": 55, "sender_visitor_name": "Hoa"})
}

/// A CareSoft fake answering `rows` as the live chat messages of the day.
async fn caresoft(rows: Vec<Value>) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(path(MESSAGES))
        .and(wiremock::matchers::query_param("conversation_type", "0"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"code": "OK", "numFound": rows.len(), "chats": rows})),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"code": "OK", "numFound": 0, "chats": []})),
        )
        .with_priority(100)
        .mount(&server)
        .await;
    server
}

async fn serve(media: &MockServer, at: &str, response: ResponseTemplate) {
    Mock::given(path(at))
        .respond_with(response)
        .mount(media)
        .await;
}

/// The CareSoft day's messages, their attachments kept in `files`.
async fn keep_day(dir: &Path, extra: &[&str]) -> crate::common::Run {
    let mut args = vec!["--records", "messages", "--attachments", "files"];
    args.extend_from_slice(extra);
    export_day(dir, "hanoi", &args).await
}

/// The PNG at `at` on the media server.
async fn serve_png(media: &MockServer, at: &str) {
    let png = ResponseTemplate::new(200).set_body_raw(PNG.to_vec(), "image/png");
    serve(media, at, png).await;
}

fn status_of(row: &Value) -> &str {
    row["attachments"][0]["status"].as_str().unwrap_or("none")
}

/// Each way a linked file can fail, beside two links to the same image:
/// kept once, every failure in its row, in the rejects and in the exit
/// code; no credential reaches the media host; no partial file stays.
#[tokio::test]
async fn links_are_fetched_kept_once_and_every_failure_is_said() {
    let media = MockServer::start().await;
    let png = || ResponseTemplate::new(200).set_body_raw(PNG.to_vec(), "image/png");
    serve(&media, "/a.png", png()).await;
    serve(&media, "/same.png", png()).await;
    serve(&media, "/gone.png", ResponseTemplate::new(404)).await;
    serve(&media, "/expired.jpg", ResponseTemplate::new(403)).await;
    serve(
        &media,
        "/fake.png",
        ResponseTemplate::new(200).set_body_raw(b"<html>login</html>".to_vec(), "image/png"),
    )
    .await;
    serve(
        &media,
        "/big.png",
        ResponseTemplate::new(200).set_body_raw([PNG, &[0u8; 4096]].concat(), "image/png"),
    )
    .await;
    serve(&media, "/slow.png", png().set_delay(Duration::from_secs(5))).await;
    serve(
        &media,
        "/to-metadata",
        ResponseTemplate::new(302)
            .insert_header("location", "http://169.254.169.254/latest/meta-data/"),
    )
    .await;
    serve(
        &media,
        "/to-private",
        ResponseTemplate::new(302).insert_header("location", "https://10.0.0.1/x.png"),
    )
    .await;
    let base = media.uri();
    let links = [
        ("/a.png", "stored"),
        ("/same.png", "stored"),
        ("/gone.png", "unavailable"),
        ("/expired.jpg", "expired"),
        ("/fake.png", "wrong_type"),
        ("/big.png", "too_large"),
        ("/slow.png", "timed_out"),
        ("/to-metadata", "refused"),
        ("/to-private", "refused"),
    ];
    let rows: Vec<Value> = links
        .iter()
        .enumerate()
        .map(|(n, (p, _))| {
            carrying(
                n + 1,
                if n < 1 { "c1" } else { "c2" },
                &format!("{base}{p}"),
                None,
            )
        })
        .collect();
    let server = caresoft(rows).await;
    let dir = caresoft_config(
        &server.uri(),
        "conversation_types = [\"livechat\"]\nattachment_hosts = [\"127.0.0.1\"]\n\
         max_attachment_size = \"1KiB\"\nattachment_timeout = \"1s\"\nattachment_rate = 1000\n",
    );
    let r = keep_day(dir.path(), &["-o", "m.jsonl", "--metrics-file", "m.prom"]).await;
    assert_eq!(r.code, 65, "{}", r.stderr);
    let metrics = std::fs::read_to_string(dir.path().join("m.prom")).unwrap();
    assert!(
        metrics.contains(
            "chatdump_last_run_attachments_missing{source=\"hanoi\",records=\"messages\"} 7\n"
        ),
        "{metrics}"
    );
    assert!(
        r.stderr.contains("attachments: 2 stored") && r.stderr.contains("7 could not be had"),
        "{}",
        r.stderr
    );
    let out = jsonl(&std::fs::read_to_string(dir.path().join("m.jsonl")).unwrap());
    assert_eq!(out.len(), links.len(), "every message is written");
    for (row, (p, want)) in out.iter().zip(links) {
        assert_eq!(status_of(row), want, "{p}: {row}");
    }
    let stored = &out[0]["attachments"][0];
    assert_eq!(stored["sha256"], sha256(PNG));
    assert_eq!(stored["content_type"], "image/png");
    assert_eq!(stored["bytes"], PNG.len());
    assert_eq!(stored["name"], "foto 1.png");
    assert_eq!(stored["path"], kept_at(PNG, "png"));
    assert_eq!(out[1]["attachments"][0]["path"], stored["path"]);
    // One file for the two chats, nothing half-written.
    assert_eq!(
        files_under(&dir.path().join("files")),
        vec![kept_at(PNG, "png")]
    );
    assert_eq!(
        std::fs::read(dir.path().join("files").join(kept_at(PNG, "png"))).unwrap(),
        PNG
    );
    let rejects = std::fs::read_to_string(dir.path().join("m.jsonl.rejects.jsonl")).unwrap();
    let rejects = jsonl(&rejects);
    assert_eq!(rejects.len(), 7);
    for (line, (p, want)) in rejects.iter().zip(&links[2..]) {
        let reason = line["reason"].as_str().unwrap();
        assert!(
            reason.starts_with(&format!("attachment {want}")),
            "{p}: {reason}"
        );
        assert_eq!(line["raw"]["attachment"]["url"], format!("{base}{p}"));
        assert_eq!(line["raw"]["conversation_id"], "c2");
    }
    assert!(rejects[5]["reason"]
        .as_str()
        .unwrap()
        .contains("169.254.169.254"));
    assert!(rejects[6]["reason"].as_str().unwrap().contains("10.0.0.1"));
    // The platform's token never went to the file host.
    for request in media.received_requests().await.unwrap() {
        assert!(
            !request.headers.contains_key("authorization")
                && !format!("{:?}", request.headers).contains(TOKEN),
            "{request:?}"
        );
    }
    // The failures are asked for again by a rerun of the window; what is
    // kept is not written twice.
    let again = keep_day(dir.path(), &["-o", "m2.jsonl"]).await;
    assert_eq!(again.code, 65, "{}", again.stderr);
    assert_eq!(
        files_under(&dir.path().join("files")),
        vec![kept_at(PNG, "png")]
    );
}

/// Without the allow-list the media server on 127.0.0.1 is never asked:
/// http is refused, and so is https to a loopback address. Without
/// `--attachments` nothing is fetched and the rows list what is there.
#[tokio::test]
async fn loopback_is_refused_unless_listed_and_nothing_is_fetched_unasked() {
    let media = MockServer::start().await;
    serve_png(&media, "/a.png").await;
    let port = media.address().port();
    let rows = vec![
        carrying(
            1,
            "c1",
            &format!("http://127.0.0.1:{port}/a.png"),
            Some("image/png"),
        ),
        carrying(2, "c1", &format!("https://127.0.0.1:{port}/a.png"), None),
        carrying(3, "c1", &format!("https://localhost:{port}/a.png"), None),
        carrying(4, "c1", "https://[::1]/a.png", None),
    ];
    let server = caresoft(rows).await;
    let dir = caresoft_config(&server.uri(), "conversation_types = [\"livechat\"]\n");
    let r = keep_day(dir.path(), &[]).await;
    assert_eq!(r.code, 65, "{}", r.stderr);
    let out = jsonl(&r.stdout);
    assert!(
        out.iter().all(|row| status_of(row) == "refused"),
        "{}",
        r.stdout
    );
    assert!(files_under(&dir.path().join("files")).is_empty());
    // Not asked for attachments: listed only.
    let plain = export_day(dir.path(), "hanoi", &["--records", "messages"]).await;
    assert_eq!(plain.code, 0, "{}", plain.stderr);
    let listed = jsonl(&plain.stdout);
    assert_eq!(listed[0]["attachments"][0]["status"], "not_fetched");
    assert_eq!(listed[0]["attachments"][0]["content_type"], "image/png");
    assert_eq!(listed[0]["attachments"][0]["name"], "foto 1.png");
    assert!(media.received_requests().await.unwrap().is_empty());
}

const REPORT: &str = "/api/v2/reports_manager.php";

/// A Wolkvox chat of the given message texts, one a second.
fn wolkvox_chat(conn: &str, texts: &[String]) -> Value {
    let rows: Vec<Value> = texts
        .iter()
        .enumerate()
        .map(|(i, text)| {
            json!({"channel": "WhatsApp", "from": "CUSTOMER", "from_name": "Luis", "to_name": "Ana",
                   "date": format!("2024-03-05 09:00:{i:02}"), "message": text,
                   "customer_id": "1", "customer_phone": "573001234567"})
        })
        .collect();
    json!({"conn_id": conn, "agent_name": "Ana", "customer_name": "Luis", "conversation": rows})
}

async fn wolkvox(chats: Vec<Value>) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(path(REPORT))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"code": 200, "error": null, "msg": "records were found", "data": chats}),
        ))
        .mount(&server)
        .await;
    server
}

const WOLKVOX_DAY: [&str; 8] = [
    "export",
    "bogota",
    "--records",
    "messages",
    "--from",
    "2024-03-05",
    "--to",
    "2024-03-06",
];

fn inline(bytes: &[u8], kind: &str) -> String {
    use base64::Engine;
    format!(
        "data:{kind};base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// Wolkvox's inline images (a streamed answer): kept once however many
/// chats send them, the text carrying a short reference instead; one that
/// is not what it says stays in its text and is said; a link beside it is
/// fetched. Message ids are those of a run without `--attachments`.
#[tokio::test]
async fn inline_images_are_kept_once_and_leave_the_text() {
    let media = MockServer::start().await;
    serve(
        &media,
        "/contrato.pdf",
        ResponseTemplate::new(200).set_body_raw(b"%PDF-1.4 contrato".to_vec(), "application/pdf"),
    )
    .await;
    let image = inline(PNG, "image/png");
    let broken = inline(b"not an image at all", "image/jpeg");
    let link = format!("<a href=\"{}/contrato.pdf\">contrato.pdf</a>", media.uri());
    let chats = vec![
        wolkvox_chat("1", &[format!("mira {image} gracias"), link.clone()]),
        wolkvox_chat("2", &[image.clone(), broken.clone()]),
    ];
    let server = wolkvox(chats).await;
    let dir = crate::wolkvox::config(&server.uri(), "attachment_hosts = [\"127.0.0.1\"]\n");
    let mut args = WOLKVOX_DAY.to_vec();
    args.extend(["--attachments", "files"]);
    let r = run(dir.path(), &args).await;
    assert_eq!(r.code, 65, "the broken image: {}", r.stderr);
    let out = jsonl(&r.stdout);
    let texts: Vec<&str> = out.iter().map(|m| m["text"].as_str().unwrap()).collect();
    let reference = format!("[attachment: {}]", kept_at(PNG, "png"));
    assert_eq!(texts[0], format!("mira {reference} gracias"));
    assert_eq!(texts[1], link, "a link stays as sent");
    assert_eq!(texts[2], reference);
    assert_eq!(texts[3], broken, "what was not kept stays in the text");
    assert_eq!(status_of(&out[3]), "wrong_type");
    assert_eq!(out[1]["attachments"][0]["content_type"], "application/pdf");
    let mut want = vec![kept_at(PNG, "png"), kept_at(b"%PDF-1.4 contrato", "pdf")];
    want.sort();
    assert_eq!(files_under(&dir.path().join("files")), want);
    // The same ids as an export that fetches nothing.
    let plain = run(dir.path(), &WOLKVOX_DAY).await;
    assert_eq!(plain.code, 0, "{}", plain.stderr);
    let plain = jsonl(&plain.stdout);
    let ids = |rows: &[Value]| {
        rows.iter()
            .map(|m| m["message_id"].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&out), ids(&plain));
    assert_eq!(plain[0]["text"], format!("mira {image} gracias"));
    assert_eq!(plain[0]["attachments"][0]["bytes"], PNG.len());
    assert_eq!(plain[0]["attachments"][0]["status"], "not_fetched");
}

/// Under `--redact` nothing is fetched or kept and no link is written:
/// each attachment keeps its type and size, and an inline image leaves
/// the text.
#[tokio::test]
async fn redacted_exports_keep_only_type_and_size() {
    let media = MockServer::start().await;
    let image = inline(PNG, "image/png");
    let link = format!(
        "<a href=\"{}/Luis-cedula.pdf\">Luis-cedula.pdf</a>",
        media.uri()
    );
    let server = wolkvox(vec![wolkvox_chat("1", &[image, link])]).await;
    let dir = crate::wolkvox::config(
        &server.uri(),
        "attachment_hosts = [\"127.0.0.1\"]\nattachments = \"files\"\n",
    );
    let mut args = WOLKVOX_DAY.to_vec();
    args.push("--redact=mask");
    let r = run(dir.path(), &args).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("no attachment is fetched"),
        "{}",
        r.stderr
    );
    let out = jsonl(&r.stdout);
    assert_eq!(
        out[0]["text"],
        format!("[attachment: image/png, {} bytes]", PNG.len())
    );
    assert_eq!(
        out[0]["attachments"],
        json!([{"sha256": null, "content_type": "image/png", "bytes": PNG.len(), "name": null,
                "path": null, "url": null, "status": "redacted"}])
    );
    assert_eq!(out[1]["attachments"][0]["url"], Value::Null);
    assert_eq!(out[1]["attachments"][0]["name"], Value::Null);
    assert_eq!(out[1]["text"], "<a href=\"[URL]\">[FILE]</a>");
    assert!(!r.stdout.contains("base64") && !r.stdout.contains("127.0.0.1"));
    assert!(!dir.path().join("files").join("sha256").exists());
    assert!(media.received_requests().await.unwrap().is_empty());
}

/// UJET: a transcript's photo is the file beside it in the external
/// storage, its video the chat's link; the conversation row counts both.
#[tokio::test]
async fn ujet_photos_beside_transcripts_and_video_links() {
    let media = MockServer::start().await;
    let video = b"\0\0\0\x18ftypmp42\0\0\0\0mp42isomvideo".to_vec();
    serve(
        &media,
        "/v/42.mp4",
        ResponseTemplate::new(200).set_body_raw(video.clone(), "video/mp4"),
    )
    .await;
    let video_url = format!("{}/v/42.mp4", media.uri());
    let transcript = json!({"comm_type": "chat", "comm_id": 100, "entries": [
        {"timestamp": 1709632800, "role": "end_user", "body": {"type": "photo", "media_id": 7781}},
        {"timestamp": 1709632801, "role": "agent", "user_data": {"name": "Ana"},
         "body": {"type": "video", "title": "Cómo activar", "video": {"url": video_url}}},
        {"timestamp": 1709632802, "role": "end_user", "body": {"type": "photo", "media_id": 9999}}
    ]});
    let chat = json!({"id": 100, "status": "finished", "chat_type": "Messaging (WhatsApp)",
        "updated_at": "2024-03-05T11:00:00.000Z",
        "photos": [{"id": 7781, "photo_type": "photo", "url": "https://media.invalid/p/7781.jpg"},
                   {"id": 9999, "photo_type": "photo", "url": format!("{}/p/9999.jpg", media.uri())}],
        "videos": [{"id": 42, "url": video_url}]});
    let server = crate::ujet::manager(vec![chat], false, |_, _| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("storage");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("chat-100.json"), transcript.to_string()).unwrap();
    std::fs::write(folder.join("chat-100-photo-7781.jpg"), JPEG).unwrap();
    let config = crate::ujet::config(
        &server.uri(),
        &format!(
            "transcripts = \"{}\"\nattachment_hosts = [\"127.0.0.1\"]\n",
            folder.display()
        ),
    );
    let files = dir.path().join("files");
    let files_arg = files.display().to_string();
    let mut all = crate::objects::SUPPORT_DAY_MESSAGES.to_vec();
    all.extend(["--attachments", &files_arg]);
    let r = run(config.path(), &all).await;
    assert_eq!(r.code, 65, "photo 9999 is nowhere: {}", r.stderr);
    let out = jsonl(&r.stdout);
    assert_eq!(status_of(&out[0]), "stored");
    assert_eq!(out[0]["attachments"][0]["content_type"], "image/jpeg");
    assert_eq!(out[0]["attachments"][0]["name"], "chat-100-photo-7781.jpg");
    assert_eq!(status_of(&out[1]), "stored");
    assert_eq!(out[1]["attachments"][0]["name"], "Cómo activar");
    assert_eq!(status_of(&out[2]), "unavailable", "no file, and a 404 link");
    let mut want = vec![kept_at(JPEG, "jpg"), kept_at(&video, "mp4")];
    want.sort();
    assert_eq!(files_under(&files), want);
    // The photo came from the folder: its link was never asked for.
    let asked: Vec<String> = media
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| r.url.path().to_string())
        .collect();
    assert!(asked.contains(&"/v/42.mp4".to_string()) && !asked.iter().any(|p| p.contains("7781")));
    let day = [
        "export",
        "support",
        "--from",
        "2024-03-05T00:00:00Z",
        "--to",
        "2024-03-06T00:00:00Z",
    ];
    let conversations = run(config.path(), &day).await;
    let rows = jsonl(&conversations.stdout);
    assert_eq!(rows[0]["attachment_count"], 3, "{}", conversations.stderr);
}

/// A server that sends headers and the first bytes of a large file, then
/// nothing: a download that is under way when the run is killed.
async fn stalling_server() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let head = "HTTP/1.1 200 OK\r\ncontent-type: image/png\r\ncontent-length: 100000000\r\n\r\n";
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(PNG).await;
                let _ = stream.write_all(&[7u8; 65536]).await;
                tokio::time::sleep(Duration::from_secs(60)).await;
            });
        }
    });
    (addr, task)
}

/// Killed mid-download, a run leaves no file in the store (its temporary
/// is swept by the next run), and the rerun keeps the file whole.
#[tokio::test]
async fn a_run_killed_mid_download_leaves_no_partial_file() {
    let (addr, stalling) = stalling_server().await;
    let server = caresoft(vec![carrying(
        1,
        "c1",
        &format!("http://{addr}/big.png"),
        None,
    )])
    .await;
    let dir = caresoft_config(
        &server.uri(),
        "conversation_types = [\"livechat\"]\nattachment_hosts = [\"127.0.0.1\"]\n",
    );
    let mut child = command(
        dir.path(),
        &[
            "export",
            "hanoi",
            "--from",
            "2024-03-01",
            "--to",
            "2024-03-02",
            "--records",
            "messages",
            "--attachments",
            "files",
            "-o",
            "m.jsonl",
        ],
    )
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    let partial = dir.path().join("files/.partial");
    let mut under_way = false;
    for _ in 0..200 {
        if files_under(&partial).len() == 1 {
            under_way = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(under_way, "the download started");
    child.kill().unwrap();
    child.wait().unwrap();
    stalling.abort();
    assert!(
        !dir.path().join("files/sha256").exists(),
        "no file in the store"
    );
    assert!(!dir.path().join("m.jsonl").exists(), "nothing published");
    // The rerun, with the file served whole: the leftover is gone.
    let media = MockServer::start().await;
    serve_png(&media, "/big.png").await;
    let server = caresoft(vec![carrying(
        1,
        "c1",
        &format!("{}/big.png", media.uri()),
        None,
    )])
    .await;
    crate::common::edit_config(dir.path(), |text| {
        text.replace(&format!("http://{}", server_base(&text)), &server.uri())
    });
    let r = keep_day(dir.path(), &["-o", "m.jsonl"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        files_under(&partial).is_empty(),
        "the killed run's temporary is swept"
    );
    assert_eq!(files_under(&dir.path().join("files/sha256")).len(), 1);
}

/// The `host:port` of the `base_url` in a configuration text.
fn server_base(config: &str) -> String {
    let at = config.find("base_url = \"http://").unwrap() + "base_url = \"http://".len();
    let rest = &config[at..];
    rest[..rest.find('/').unwrap()].to_string()
}

/// A download that breaks off is asked again, and only a whole file is
/// kept; a 503 is asked again too.
#[tokio::test]
async fn a_broken_download_is_asked_again() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let asked = Arc::new(AtomicUsize::new(0));
    let counter = asked.clone();
    let server = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 {}\r\ncontent-type: image/png\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    if n == 1 { "503 Busy" } else { "200 OK" },
                    PNG.len()
                );
                let _ = stream.write_all(head.as_bytes()).await;
                match n {
                    // Half the file, then the connection closes.
                    0 => {
                        let _ = stream.write_all(&PNG[..PNG.len() / 2]).await;
                    }
                    1 => {}
                    _ => {
                        let _ = stream.write_all(PNG).await;
                    }
                }
                let _ = stream.shutdown().await;
            });
        }
    });
    let server_api = caresoft(vec![carrying(
        1,
        "c1",
        &format!("http://{addr}/a.png"),
        None,
    )])
    .await;
    let dir = caresoft_config(
        &server_api.uri(),
        "conversation_types = [\"livechat\"]\nattachment_hosts = [\"127.0.0.1\"]\n",
    );
    let r = keep_day(dir.path(), &[]).await;
    server.abort();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(status_of(&jsonl(&r.stdout)[0]), "stored");
    assert_eq!(asked.load(Ordering::SeqCst), 3, "broken, busy, whole");
    assert_eq!(
        files_under(&dir.path().join("files")),
        vec![kept_at(PNG, "png")]
    );
}

/// A Singer tap keeps attachments as `export` does, from the source's
/// `attachments` key: its RECORD messages carry where each file is kept.
#[tokio::test]
async fn a_tap_keeps_attachments_too() {
    let media = MockServer::start().await;
    serve_png(&media, "/a.png").await;
    let server = caresoft(vec![carrying(
        1,
        "c1",
        &format!("{}/a.png", media.uri()),
        None,
    )])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = json!({
        "kind": "caresoft", "name": "hanoi", "base_url": format!("{}/acme", server.uri()),
        "token_env": "CS_TOKEN", "conversation_types": ["livechat"], "rate_limit": 1000,
        "start_date": "2024-03-01", "end_date": "2024-03-02",
        "attachments": "files", "attachment_hosts": ["127.0.0.1"],
    });
    std::fs::write(dir.path().join("tap.json"), config.to_string()).unwrap();
    let discover = run(dir.path(), &["tap", "--config", "tap.json", "--discover"]).await;
    assert_eq!(discover.code, 0, "{}", discover.stderr);
    let mut catalog: Value = serde_json::from_str(&discover.stdout).unwrap();
    for stream in catalog["streams"].as_array_mut().unwrap() {
        let chosen = stream["tap_stream_id"] == "messages";
        stream["metadata"][0]["metadata"]["selected"] = json!(chosen);
    }
    std::fs::write(dir.path().join("catalog.json"), catalog.to_string()).unwrap();
    let r = run(
        dir.path(),
        &["tap", "--config", "tap.json", "--catalog", "catalog.json"],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let records: Vec<Value> = jsonl(&r.stdout)
        .into_iter()
        .filter(|m| m["type"] == "RECORD")
        .collect();
    assert_eq!(records.len(), 1, "{}", r.stdout);
    let attachment = &records[0]["record"]["attachments"][0];
    assert_eq!(attachment["status"], "stored", "{}", r.stdout);
    assert_eq!(attachment["path"], kept_at(PNG, "png"));
    assert_eq!(
        files_under(&dir.path().join("files")),
        vec![kept_at(PNG, "png")]
    );
}

/// Absurd attachment settings are configuration errors that name the
/// key, never a crash.
#[tokio::test]
async fn absurd_attachment_settings_are_refused() {
    for (setting, key) in [
        ("attachment_rate = 1e-300", "attachment_rate"),
        ("attachment_rate = 1e300", "attachment_rate"),
        ("attachment_rate = -1", "attachment_rate"),
        ("max_attachment_size = 0", "max_attachment_size"),
        ("attachment_timeout = \"0s\"", "attachment_timeout"),
        ("attachment_hosts = \"127.0.0.1\"", "attachment_hosts"),
    ] {
        let dir = caresoft_config("http://127.0.0.1:9", &format!("{setting}\n"));
        let r = keep_day(dir.path(), &[]).await;
        assert_eq!(r.code, 78, "{setting}: {}", r.stderr);
        assert!(r.stderr.contains(key), "{setting}: {}", r.stderr);
    }
}
