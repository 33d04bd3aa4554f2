//! What attachments are, read from what the platforms write: inline
//! `data:` payloads and `<a href>` links in message text, and the type a
//! file's first bytes show. Pure functions over text and bytes: providers
//! use them to name what a message carries, and the attachment stage to
//! check what it fetched against what it was told.

use std::ops::Range;

use base64::Engine as _;

use crate::model::{AttachStatus, Attachment, Attachments, Message, Origin};

/// One inline `data:TYPE;base64,PAYLOAD` in a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataUri {
    /// The whole URI, `data:` to the payload's last character.
    pub span: Range<usize>,
    /// The declared type, lowercase (`image/png`).
    pub content_type: String,
    /// The base64 payload.
    pub payload: Range<usize>,
}

impl DataUri {
    /// The decoded size, from the payload's length alone.
    pub fn decoded_len(&self, text: &str) -> u64 {
        let payload = text[self.payload.clone()].as_bytes();
        let padding = payload.iter().rev().take_while(|b| **b == b'=').count();
        let sextets = (payload.len() - padding) as u64;
        sextets * 3 / 4
    }

    /// The payload's bytes, or `None` when it is not base64.
    pub fn decode(&self, text: &str) -> Option<Vec<u8>> {
        let payload = &text[self.payload.clone()];
        base64::engine::general_purpose::STANDARD
            .decode(payload)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(payload))
            .ok()
    }
}

/// Type names are short: a longer one is not a data URI's header.
const LONGEST_HEADER: usize = 128;

/// Every base64 `data:` URI in `text`, in order. Only base64 ones carry a
/// file; a plain `data:text/plain,hi` is left as text.
pub fn data_uris(text: &str) -> Vec<DataUri> {
    // One searcher for every text (making one costs more than a search of
    // a short message).
    static DATA: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"data:"));
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = DATA.find(&bytes[from..]) {
        let start = from + at;
        from = start + 5;
        let Some(uri) = data_uri_at(text, start) else {
            continue;
        };
        from = uri.span.end;
        found.push(uri);
    }
    found
}

fn data_uri_at(text: &str, start: usize) -> Option<DataUri> {
    let bytes = text.as_bytes();
    let header_end = (start + 5 + LONGEST_HEADER).min(bytes.len());
    let marker = memchr::memmem::find(&bytes[start + 5..header_end], b";base64,")?;
    let header = &text[start + 5..start + 5 + marker];
    let media = header.split(';').next().unwrap_or("");
    if !is_media_type(media) || header.bytes().any(|b| b.is_ascii_whitespace()) {
        return None;
    }
    let payload_start = start + 5 + marker + ";base64,".len();
    let payload_len = bytes[payload_start..]
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
        .count();
    if payload_len == 0 {
        return None;
    }
    let end = payload_start + payload_len;
    Some(DataUri {
        span: start..end,
        content_type: media.to_ascii_lowercase(),
        payload: payload_start..end,
    })
}

/// Whether `text` is `type/subtype`, each of token characters (RFC 6838).
fn is_media_type(text: &str) -> bool {
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.!#$&^_".contains(&b))
    };
    text.split_once('/')
        .is_some_and(|(kind, sub)| token(kind) && token(sub))
}

/// `text` with each data URI replaced by what `with` gives for it (the
/// `n`th URI, 0-based).
pub fn replace_data_uris(
    text: &str,
    uris: &[DataUri],
    mut with: impl FnMut(usize, &DataUri) -> String,
) -> String {
    let mut out = String::with_capacity(text.len().min(4096));
    let mut from = 0;
    for (n, uri) in uris.iter().enumerate() {
        out.push_str(&text[from..uri.span.start]);
        out.push_str(&with(n, uri));
        from = uri.span.end;
    }
    out.push_str(&text[from..]);
    out
}

/// Replaces each inline payload of `message`'s text that was kept by
/// `[attachment: PATH]`, so no cell carries megabytes. Done as the message
/// is written, after its id: a digest id is the same with and without
/// `--attachments`.
pub fn settle_inline(message: &mut Message) {
    let kept = |n: usize| {
        message.attachments.iter().find(|a| {
            a.status == AttachStatus::Stored && a.origins.contains(&Origin::Inline(n as u32))
        })
    };
    let Some(text) = message.text.as_deref() else {
        return;
    };
    if !message.attachments.iter().any(|a| {
        a.status == AttachStatus::Stored && a.origins.iter().any(|o| matches!(o, Origin::Inline(_)))
    }) {
        return;
    }
    let uris = data_uris(text);
    let replaced = replace_data_uris(text, &uris, |n, uri| match kept(n) {
        Some(a) => format!("[attachment: {}]", a.path.as_deref().unwrap_or("")),
        None => text[uri.span.clone()].to_string(),
    });
    message.text = Some(replaced);
}

/// A link in message HTML: its address and the text it shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub url: String,
    pub label: Option<String>,
}

/// The `http(s)` targets of `<a href="...">` anchors in `text`, in order.
pub fn links(text: &str) -> Vec<Link> {
    let lower = text.to_ascii_lowercase();
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = lower[from..].find("href=") {
        let start = from + at + 5;
        from = start;
        let Some(quote) = text[start..]
            .chars()
            .next()
            .filter(|c| *c == '"' || *c == '\'')
        else {
            continue;
        };
        let value_start = start + 1;
        let Some(len) = text[value_start..].find(quote) else {
            break;
        };
        let url = unescape_html(text[value_start..value_start + len].trim());
        from = value_start + len + 1;
        let scheme = url.get(..8).unwrap_or(&url).to_ascii_lowercase();
        if !(scheme.starts_with("https://") || scheme.starts_with("http://")) {
            continue;
        }
        // The anchor's text, up to `</a>`, without tags.
        let label = text[from..].find('>').and_then(|gt| {
            let inner = &text[from + gt + 1..];
            let end = inner
                .to_ascii_lowercase()
                .find("</a")
                .unwrap_or(inner.len());
            let shown = unescape_html(strip_tags(&inner[..end]).trim());
            (!shown.is_empty() && shown != url).then_some(shown)
        });
        found.push(Link { url, label });
    }
    found
}

fn strip_tags(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

fn unescape_html(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// What a message's text carries: each inline payload (its declared type
/// and size, read without decoding) and each linked file, in order.
pub fn in_text(text: &str) -> Attachments {
    // A data URI has a `:`, an anchor a `<`: most texts have neither, and
    // are passed over at one scan.
    let bytes = text.as_bytes();
    if memchr::memchr2(b':', b'<', bytes).is_none() {
        return Attachments::default();
    }
    let mut found = Vec::new();
    if memchr::memchr(b':', bytes).is_some() {
        for (n, uri) in data_uris(text).into_iter().enumerate() {
            found.push(Attachment {
                origins: vec![Origin::Inline(n as u32)],
                bytes: Some(uri.decoded_len(text)),
                content_type: Some(uri.content_type),
                ..Default::default()
            });
        }
    }
    if memchr::memchr(b'<', bytes).is_some() {
        found.extend(links(text).into_iter().map(|link| Attachment {
            name: link.label.or_else(|| name_in_url(&link.url)),
            origins: vec![Origin::Url(link.url)],
            ..Default::default()
        }));
    }
    found.into()
}

/// The last segment of a URL's path, if it looks like a file name.
pub fn name_in_url(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    let last = parsed.path_segments()?.next_back()?;
    let decoded = percent_decode(last);
    (!decoded.is_empty()).then_some(decoded)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, ..) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The type a file's first bytes show, for the kinds chats carry.
pub fn sniff(head: &[u8]) -> Option<&'static str> {
    let starts = |magic: &[u8]| head.starts_with(magic);
    let at = |offset: usize, magic: &[u8]| head.get(offset..offset + magic.len()) == Some(magic);
    Some(if starts(b"\x89PNG\r\n\x1a\n") {
        "image/png"
    } else if starts(b"\xff\xd8\xff") {
        "image/jpeg"
    } else if starts(b"GIF87a") || starts(b"GIF89a") {
        "image/gif"
    } else if starts(b"RIFF") && at(8, b"WEBP") {
        "image/webp"
    } else if starts(b"RIFF") && at(8, b"WAVE") {
        "audio/wav"
    } else if starts(b"BM") && head.len() >= 14 {
        "image/bmp"
    } else if starts(b"%PDF-") {
        "application/pdf"
    } else if at(4, b"ftyp") {
        match head.get(8..12) {
            Some(b"heic" | b"heix" | b"mif1" | b"msf1") => "image/heic",
            Some(b"qt  ") => "video/quicktime",
            Some(b"3gp4" | b"3gp5" | b"3gp6" | b"3g2a") => "video/3gpp",
            Some(b"M4A " | b"M4B ") => "audio/mp4",
            _ => "video/mp4",
        }
    } else if starts(b"OggS") {
        "audio/ogg"
    } else if starts(b"\x1a\x45\xdf\xa3") {
        "video/webm"
    } else if starts(b"ID3") || starts(b"\xff\xfb") || starts(b"\xff\xf3") {
        "audio/mpeg"
    } else if starts(b"#!AMR") {
        "audio/amr"
    } else if starts(b"PK\x03\x04") {
        "application/zip"
    } else {
        return None;
    })
}

/// A `Content-Type` as compared: its media type, lowercase, with the
/// common misspellings settled.
pub fn media_type(declared: &str) -> String {
    let base = declared.split(';').next().unwrap_or("").trim();
    // Anything else a server or a record says is taken as saying nothing.
    if !is_media_type(base) {
        return String::new();
    }
    match base.to_ascii_lowercase().as_str() {
        "image/jpg" | "image/pjpeg" => "image/jpeg".into(),
        "audio/mp3" => "audio/mpeg".into(),
        "audio/x-wav" | "audio/wave" => "audio/wav".into(),
        other => other.to_string(),
    }
}

/// Types that say nothing of the bytes.
fn is_generic(media: &str) -> bool {
    matches!(
        media,
        "" | "application/octet-stream" | "binary/octet-stream" | "application/binary"
    )
}

/// The families whose members share a container (and so a signature).
fn family(media: &str) -> &str {
    match media {
        "video/mp4" | "video/quicktime" | "video/3gpp" | "audio/mp4" | "audio/m4a"
        | "audio/x-m4a" | "video/x-m4v" | "image/heic" | "image/heif" => "ftyp",
        "audio/ogg" | "video/ogg" | "application/ogg" | "audio/opus" => "ogg",
        "video/webm" | "audio/webm" | "video/x-matroska" => "matroska",
        m if m == "application/zip"
            || m.starts_with("application/vnd.openxmlformats")
            || m.starts_with("application/vnd.oasis.opendocument")
            || m == "application/epub+zip" =>
        {
            "zip"
        }
        other => other,
    }
}

/// Whether bytes that look like `sniffed` may be what was `declared`: the
/// same kind, or a declaration that says nothing. A declared type chatdump
/// knows the signature of must show it; one it does not know (plain text,
/// CSV) is taken at its word.
pub fn agrees(declared: &str, sniffed: Option<&str>) -> bool {
    let declared = media_type(declared);
    if is_generic(&declared) {
        return true;
    }
    match sniffed {
        Some(sniffed) => family(&declared) == family(sniffed),
        None => !is_known(&declared),
    }
}

/// The types [`sniff`] recognises (one of their family's signatures).
pub fn is_known(media: &str) -> bool {
    const KNOWN: &[&str] = &[
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "audio/wav",
        "image/bmp",
        "application/pdf",
        "ftyp",
        "ogg",
        "matroska",
        "audio/mpeg",
        "audio/amr",
        "zip",
    ];
    KNOWN.contains(&family(media))
}

/// The file-name extension a stored file gets for its verified type
/// (`.bin` for a type chatdump does not name).
pub fn extension(media: &str) -> &'static str {
    match media_type(media).as_str() {
        "image/png" => "png",
        "image/jpeg" => "jpg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        "image/bmp" => "bmp",
        "image/heic" | "image/heif" => "heic",
        "audio/wav" => "wav",
        "application/pdf" => "pdf",
        "video/mp4" => "mp4",
        "video/quicktime" => "mov",
        "video/3gpp" => "3gp",
        "audio/mp4" | "audio/m4a" | "audio/x-m4a" => "m4a",
        "audio/ogg" | "audio/opus" => "ogg",
        "video/webm" | "audio/webm" => "webm",
        "audio/mpeg" => "mp3",
        "audio/amr" => "amr",
        "application/zip" => "zip",
        "text/plain" => "txt",
        "text/csv" => "csv",
        _ => "bin",
    }
}

/// The type a stored file is recorded with: what its bytes show, else
/// what was declared (when it is a type at all), else a byte stream.
pub fn verified_type(declared: Option<&str>, sniffed: Option<&'static str>) -> String {
    match (sniffed, declared.map(media_type)) {
        (Some(sniffed), _) => sniffed.to_string(),
        // `media_type` leaves only a real type, or nothing.
        (None, Some(declared)) if !is_generic(&declared) => declared,
        _ => "application/octet-stream".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

    fn encode(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    #[test]
    fn inline_images_are_found_decoded_and_replaced() {
        let text = format!(
            "mira: data:image/PNG;base64,{} y data:image/jpeg;name=a.jpg;base64,/9j/4AAQ fin",
            encode(PNG)
        );
        let uris = data_uris(&text);
        assert_eq!(uris.len(), 2);
        assert_eq!(uris[0].content_type, "image/png");
        assert_eq!(uris[0].decode(&text).as_deref(), Some(PNG));
        assert_eq!(uris[0].decoded_len(&text), PNG.len() as u64);
        assert_eq!(uris[1].content_type, "image/jpeg");
        assert_eq!(
            uris[1].decode(&text),
            Some(vec![0xff, 0xd8, 0xff, 0xe0, 0, 0x10])
        );
        let replaced = replace_data_uris(&text, &uris, |n, _| format!("[{n}]"));
        assert_eq!(replaced, "mira: [0] y [1] fin");
        // Not a file: no base64, no type, an empty payload.
        for plain in [
            "data:text/plain,hola",
            "data:;base64,AAAA",
            "data:image/png;base64,",
            "metadata:x",
            "data: image/png;base64,AAAA",
        ] {
            assert!(data_uris(plain).is_empty(), "{plain}");
        }
        assert_eq!(data_uris("data:image/png;base64,!!!")[..].len(), 0);
        let broken = "data:image/png;base64,A";
        assert_eq!(data_uris(broken)[0].decode(broken), None);
    }

    #[test]
    fn links_are_read_from_anchors() {
        let text = r#"<a href="https://cdn.example/f/Factura%20marzo.pdf" target="_blank">Factura <b>marzo</b></a> and <A HREF='http://x.example/a?b=1&amp;c=2'>http://x.example/a?b=1&amp;c=2</A> <a href="javascript:alert(1)">x</a> <a href="mailto:a@b">m</a> <a href="https://cut"#;
        let found = links(text);
        assert_eq!(
            found,
            vec![
                Link {
                    url: "https://cdn.example/f/Factura%20marzo.pdf".into(),
                    label: Some("Factura marzo".into())
                },
                Link {
                    url: "http://x.example/a?b=1&c=2".into(),
                    label: None
                },
            ]
        );
        assert_eq!(
            name_in_url(&found[0].url).as_deref(),
            Some("Factura marzo.pdf")
        );
        assert_eq!(name_in_url("https://h.example/"), None);
        assert_eq!(
            name_in_url("https://h.example/a/%ff%fe.jpg").as_deref(),
            Some("\u{fffd}\u{fffd}.jpg")
        );
    }

    #[test]
    fn types_are_told_by_their_bytes() {
        assert_eq!(sniff(PNG), Some("image/png"));
        assert_eq!(sniff(b"\xff\xd8\xff\xe0"), Some("image/jpeg"));
        assert_eq!(sniff(b"\0\0\0\x18ftypmp42"), Some("video/mp4"));
        assert_eq!(sniff(b"\0\0\0\x18ftypheic"), Some("image/heic"));
        assert_eq!(sniff(b"%PDF-1.7"), Some("application/pdf"));
        assert_eq!(sniff(b"<html>"), None);
        assert!(agrees("image/png", Some("image/png")));
        assert!(agrees("IMAGE/JPG; q=1", Some("image/jpeg")));
        assert!(agrees("video/quicktime", Some("video/mp4")));
        assert!(agrees("application/octet-stream", Some("image/png")));
        assert!(agrees("text/plain", None));
        assert!(
            !agrees("image/png", None),
            "an HTML error page served as an image"
        );
        assert!(!agrees("image/png", Some("image/jpeg")));
        assert!(!agrees("video/mp4", Some("application/pdf")));
        assert!(agrees(
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            Some("application/zip")
        ));
        assert_eq!(extension("image/jpeg"), "jpg");
        assert_eq!(extension("application/x-unknown"), "bin");
        assert_eq!(verified_type(Some("text/csv"), None), "text/csv");
        assert_eq!(
            verified_type(Some("garbage"), None),
            "application/octet-stream"
        );
        assert_eq!(verified_type(None, Some("image/gif")), "image/gif");
    }

    proptest! {
        #[test]
        fn any_text_is_read_without_panic(text in any::<String>()) {
            for uri in data_uris(&text) {
                prop_assert!(text.is_char_boundary(uri.span.start) && text.is_char_boundary(uri.span.end));
                let _ = uri.decode(&text);
                let _ = uri.decoded_len(&text);
            }
            let replaced = replace_data_uris(&text, &data_uris(&text), |_, _| String::new());
            prop_assert!(replaced.len() <= text.len());
            for link in links(&text) {
                prop_assert!(link.url.to_ascii_lowercase().starts_with("http"));
                let _ = name_in_url(&link.url);
            }
        }

        #[test]
        fn any_payload_round_trips(bytes in proptest::collection::vec(any::<u8>(), 1..512), before in "[^d]{0,20}", kind in "(image|video|application)/[a-z]{1,8}") {
            let text = format!("{before}data:{kind};base64,{} after", encode(&bytes));
            let uris = data_uris(&text);
            prop_assert_eq!(uris.len(), 1);
            prop_assert_eq!(uris[0].decode(&text), Some(bytes.clone()));
            prop_assert_eq!(uris[0].decoded_len(&text), bytes.len() as u64);
            prop_assert_eq!(&uris[0].content_type, &kind);
        }

        #[test]
        fn any_bytes_are_sniffed_without_panic(head in proptest::collection::vec(any::<u8>(), 0..64), declared in any::<String>()) {
            let sniffed = sniff(&head);
            let _ = agrees(&declared, sniffed);
            let media = verified_type(Some(&declared), sniffed);
            prop_assert!(!extension(&media).is_empty());
        }
    }
}
