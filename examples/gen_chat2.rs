//! Generates a realistic Wolkvox `chat_2` response (nested shape) of about
//! the requested size, for the streaming benchmark (`scripts/bench-wolkvox.sh`).
//!
//! Usage: `cargo run --release --example gen_chat2 -- OUT.json [MB] [mix]`
//! where mix is `cap` (default: a response at the platform's limits, a few
//! tens of thousands of messages, mostly text with HTML links and inline
//! base64 images, like a real 256 MB answer) or `text` (only short text
//! messages: the most records per megabyte, the hardest case for a parser)
//! or `escaped` (the text mix written the way PHP's `json_encode` writes it by
//! default: every non-ASCII character as `\uXXXX`, surrogate pairs for
//! emoji, `/` as `\/`).

use std::io::{BufWriter, Write};

const WORDS: &[&str] = &[
    "hola",
    "buenas",
    "tardes",
    "quiero",
    "información",
    "del",
    "plan",
    "hogar",
    "con",
    "fibra",
    "gracias",
    "señor",
    "pedido",
    "número",
    "factura",
    "pago",
    "¿cuándo",
    "llega?",
    "mañana",
    "por",
    "favor",
    "confirmar",
    "dirección",
    "Bogotá",
    "Medellín",
    "cuenta",
    "\"premium\"",
    "sí,",
    "no",
    "😊",
];

/// A tiny deterministic generator, so every run writes the same bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn sentence(rng: &mut Rng, words: u64) -> String {
    (0..words)
        .map(|_| WORDS[rng.below(WORDS.len() as u64) as usize])
        .collect::<Vec<_>>()
        .join(" ")
}

/// A JSON string as PHP's `json_encode` writes it without flags.
fn php_escaped(json: &str) -> String {
    let mut out = String::with_capacity(json.len() * 2);
    for c in json.chars() {
        match c {
            '/' => out.push_str("\\/"),
            c if c.is_ascii() => out.push(c),
            c => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .get(1)
        .map(String::as_str)
        .unwrap_or("chat_2-bench.json");
    let megabytes: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(256);
    let mix = args.get(3).map(String::as_str).unwrap_or("cap");
    let text_only = mix == "text" || mix == "escaped";
    let php = mix == "escaped";
    let target = megabytes * 1024 * 1024;
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let image = format!(
        "data:image/jpeg;base64,{}",
        "/9j/4AAQSkZJRgABAQAAAQABAAD".repeat(7_500)
    );
    let mut written: u64 = 0;
    let mut chats = 0u64;
    let mut messages = 0u64;
    let head = "{\"code\":200,\"error\":null,\"msg\":\"records were found\",\"data\":[";
    out.write_all(head.as_bytes())?;
    written += head.len() as u64;
    while written < target {
        chats += 1;
        let conn = 40_000_000 + chats;
        let mut chat = format!(
            "{}{{\"conn_id\":\"{conn}\",\"agent_name\":\"Agente {}\",\"customer_name\":\"Cliente {conn}\",\"conversation\":[",
            if chats > 1 { "," } else { "" },
            rng.below(300)
        );
        let count = 4 + rng.below(30);
        for i in 0..count {
            messages += 1;
            let customer = i % 2 == 0;
            let roll = rng.below(1000);
            let body = if text_only || roll < 960 {
                let words = 3 + rng.below(25);
                let mut text = sentence(&mut rng, words);
                // One message in twenty carries contact data, as real chats do.
                match rng.below(40) {
                    0 => text.push_str(&format!(
                        " mi celular es 300 {:03} {:04}",
                        rng.below(1000),
                        rng.below(10_000)
                    )),
                    1 => text.push_str(&format!(
                        " escríbeme a cliente{}@correo.com",
                        rng.below(100_000)
                    )),
                    _ => {}
                }
                let json = serde_json::to_string(&text).unwrap();
                if php {
                    php_escaped(&json)
                } else {
                    json
                }
            } else if roll < 985 {
                format!("\"<a href=\\\"https://files.wolkvox.com/{conn}/{i}.pdf\\\" target=\\\"_blank\\\">archivo.pdf</a>\"")
            } else {
                format!("\"{image}\"")
            };
            let minute = (chats / 40) % 1440;
            chat.push_str(&format!(
                "{}{{\"channel\":\"WhatsApp\",\"from\":\"{}\",\"from_name\":\"{}\",\"to_name\":\"{}\",\"date\":\"2024-03-05 {:02}:{:02}:{:02}\",\"message\":{body},\"customer_id\":\"{}\",\"customer_phone\":\"57300{:07}\"}}",
                if i > 0 { "," } else { "" },
                if customer { "CUSTOMER" } else { "AGENT" },
                if customer { "Cliente" } else { "Agente" },
                if customer { "Agente" } else { "Cliente" },
                minute / 60,
                minute % 60,
                i % 60,
                1_000_000_000 + conn,
                conn % 10_000_000,
            ));
        }
        chat.push_str("]}");
        out.write_all(chat.as_bytes())?;
        written += chat.len() as u64;
    }
    out.write_all(b"]}")?;
    out.flush()?;
    eprintln!(
        "wrote {path}: {} MB, {chats} chats, {messages} messages",
        written / (1024 * 1024)
    );
    Ok(())
}
