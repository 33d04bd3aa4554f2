//! The files a CareSoft message of `type` 2 carries: its `content` is a
//! JSON object (or its text) whose shape the vendor does not document, so
//! it is searched for links by the names such objects use.

use serde_json::Value;

use crate::model::{Attachment, Origin};
use crate::source::fields;

/// The files a type-2 message's JSON object names (it may come as the
/// object or as its text). Its shape is not documented: every `http(s)`
/// address under a key that names a link (`url`, `link`, `src`, ...) is
/// one, with the name, type and size found beside it; a list of them (or
/// `payload`, `attachments`) is walked as deep as four levels.
pub(super) fn attachments_in(content: Option<&Value>) -> Vec<Attachment> {
    let parsed;
    let content = match content {
        Some(Value::String(text)) => match serde_json::from_str::<Value>(text) {
            Ok(value) => {
                parsed = value;
                &parsed
            }
            Err(_) => return Vec::new(),
        },
        Some(other) => other,
        None => return Vec::new(),
    };
    let mut found = Vec::new();
    collect_attachments(content, 0, &mut found);
    found
}

fn collect_attachments(value: &Value, depth: usize, found: &mut Vec<Attachment>) {
    const LINK_KEYS: &[&str] = &[
        "url",
        "link",
        "src",
        "href",
        "file_url",
        "download_url",
        "path",
    ];
    if depth > 4 {
        return;
    }
    match value {
        Value::Array(items) => items
            .iter()
            .for_each(|item| collect_attachments(item, depth + 1, found)),
        Value::Object(object) => {
            let link = LINK_KEYS.iter().find_map(|key| {
                let url = object.get(*key)?.as_str()?.trim();
                let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
                (lower.starts_with("https://") || lower.starts_with("http://")).then_some(url)
            });
            if let Some(url) = link {
                let text = |keys: &[&str]| keys.iter().find_map(|k| fields::text(object.get(*k)));
                // The first key that holds a `type/subtype` (CareSoft's own
                // `type` is often a word: `image`, `file`).
                let content_type = [
                    "mime_type",
                    "mimetype",
                    "mime",
                    "content_type",
                    "file_type",
                    "type",
                ]
                .iter()
                .filter_map(|k| fields::text(object.get(*k)))
                .map(|t| crate::media::media_type(&t))
                .find(|t| !t.is_empty());
                let bytes = ["size", "file_size", "bytes"]
                    .iter()
                    .find_map(|k| object.get(*k)?.as_u64());
                found.push(Attachment {
                    origins: vec![Origin::Url(url.to_string())],
                    name: text(&["name", "file_name", "filename", "title"])
                        .or_else(|| crate::media::name_in_url(url)),
                    content_type,
                    bytes,
                    ..Default::default()
                });
                return;
            }
            for child in object.values() {
                if child.is_object() || child.is_array() {
                    collect_attachments(child, depth + 1, found);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A type-2 object in the shapes seen or likely: flat, as its text,
    /// nested under `payload` or in a list; a word `type` is no type; an
    /// object with no link names nothing.
    #[test]
    fn file_objects_name_their_links() {
        let shapes = [
            serde_json::json!({"type": "image", "url": "https://cdn.example/a.jpg", "size": 120}),
            serde_json::json!(
                r#"{"file_name": "hóa đơn.pdf", "link": "https://cdn.example/f?id=1", "mime_type": "application/pdf"}"#
            ),
            serde_json::json!({"type": "template", "payload": {"attachments": [
                {"type": "file", "payload": {"url": "https://cdn.example/1.bin", "content_type": "bad type"}},
                {"src": "http://cdn.example/2.png", "content_type": "IMAGE/PNG"}
            ]}}),
            serde_json::json!({"type": "image", "thumb": "https://cdn.example/t.jpg"}),
            serde_json::json!("không phải JSON"),
            serde_json::json!({"url": "javascript:alert(1)"}),
        ];
        let found: Vec<Vec<Attachment>> = shapes.iter().map(|c| attachments_in(Some(c))).collect();
        assert_eq!(found[0].len(), 1);
        assert_eq!(found[0][0].url(), Some("https://cdn.example/a.jpg"));
        assert_eq!(found[0][0].content_type, None, "`image` is no type");
        assert_eq!(found[0][0].bytes, Some(120));
        assert_eq!(found[0][0].name.as_deref(), Some("a.jpg"));
        assert_eq!(found[1][0].name.as_deref(), Some("hóa đơn.pdf"));
        assert_eq!(found[1][0].content_type.as_deref(), Some("application/pdf"));
        let nested: Vec<Option<&str>> = found[2].iter().map(|a| a.url()).collect();
        assert_eq!(
            nested,
            [
                Some("https://cdn.example/1.bin"),
                Some("http://cdn.example/2.png")
            ]
        );
        assert_eq!(found[2][0].content_type, None);
        assert_eq!(found[2][1].content_type.as_deref(), Some("image/png"));
        assert!(found[3..].iter().all(Vec::is_empty));
    }

    /// A hostile object: nested far deeper than any file object, as text
    /// and as a value, and wider than any: read without a crash, links
    /// looked for only near the top.
    #[test]
    fn absurd_objects_name_nothing_and_do_not_crash() {
        let deep_text = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(attachments_in(Some(&Value::String(deep_text))).is_empty());
        let mut deep = serde_json::json!({"url": "https://cdn.example/deep.jpg"});
        for _ in 0..100 {
            deep = serde_json::json!({ "payload": deep });
        }
        assert!(attachments_in(Some(&deep)).is_empty(), "past four levels");
        let wide = Value::Array(
            (0..10_000)
                .map(|n| serde_json::json!({"url": format!("https://cdn.example/{n}.jpg")}))
                .collect(),
        );
        assert_eq!(attachments_in(Some(&wide)).len(), 10_000);
    }
}
