//! Compression by the output's extension (`.gz`, `.zst`), and the stream
//! the writer thread writes through: stdout, a file in place, or a
//! temporary file synced before it is moved into place.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

use flate2::write::GzEncoder;

/// How an output file is compressed, by its extension: `.gz` (gzip on the
/// zlib-rs backend, at level 2) or `.zst` (zstd at level 3). Compression
/// runs on the writer thread beside the parsing: at gzip's usual level 6 it
/// took three times as long as the export itself (a quarter more bytes at
/// level 2: about 12% of chat JSONL, against 10%; `.zst` is smaller
/// still, and faster).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub(super) const STRIPPED: [&'static str; 2] = [".gz", ".zst"];
    const ZSTD_LEVEL: i32 = 3;
    // Levels 1 to 3 keep a `.gz` export at least half as fast as a plain
    // one; 2 is nearly as fast as 1 and nearly as small as 3 (BENCHMARKS.md).
    const GZIP_LEVEL: u32 = 2;

    pub fn from_path(path: &Path) -> Compression {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("gz") => Compression::Gzip,
            Some(e) if e.eq_ignore_ascii_case("zst") => Compression::Zstd,
            _ => Compression::None,
        }
    }

    pub(super) fn stream(self, file: File, durability: Durability) -> io::Result<Stream> {
        Ok(match self {
            Compression::None => Stream::File(file, durability),
            Compression::Gzip => Stream::Gzip(
                Box::new(GzEncoder::new(
                    file,
                    flate2::Compression::new(Self::GZIP_LEVEL),
                )),
                durability,
            ),
            Compression::Zstd => Stream::Zstd(
                Box::new(zstd::Encoder::new(file, Self::ZSTD_LEVEL)?),
                durability,
            ),
        })
    }

    /// Reads back a file written this way (`latest` rewrites one).
    pub fn reader(self, file: File) -> io::Result<Box<dyn io::Read>> {
        Ok(match self {
            Compression::None => Box::new(file),
            Compression::Gzip => Box::new(flate2::read::GzDecoder::new(file)),
            Compression::Zstd => Box::new(zstd::Decoder::new(file)?),
        })
    }
}

/// The byte stream under a writer: stdout, a plain file, or a compressed one.
/// A file written in place (a FIFO, a device) is not fsynced: it has no
/// storage of its own, and `fsync` on a pipe is an error.
pub(crate) enum Stream {
    Stdout(io::Stdout),
    File(File, Durability),
    Gzip(Box<GzEncoder<File>>, Durability),
    Zstd(Box<zstd::Encoder<'static, File>>, Durability),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Durability {
    Sync,
    InPlace,
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Stdout(s) => s.write(buf),
            Stream::File(f, _) => f.write(buf),
            Stream::Gzip(g, _) => g.write(buf),
            Stream::Zstd(z, _) => z.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Stream::Stdout(s) => s.write_all(buf),
            Stream::File(f, _) => f.write_all(buf),
            Stream::Gzip(g, _) => g.write_all(buf),
            Stream::Zstd(z, _) => z.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Stdout(s) => s.flush(),
            Stream::File(f, _) => f.flush(),
            Stream::Gzip(g, _) => g.flush(),
            Stream::Zstd(z, _) => z.flush(),
        }
    }
}

impl Stream {
    /// Ends the stream and makes it durable.
    pub(super) fn finish(self) -> io::Result<()> {
        match self {
            Stream::Stdout(mut s) => s.flush(),
            Stream::File(f, Durability::Sync) => f.sync_all(),
            Stream::File(mut f, Durability::InPlace) => f.flush(),
            Stream::Gzip(g, Durability::Sync) => g.finish()?.sync_all(),
            Stream::Gzip(g, Durability::InPlace) => g.finish().map(drop),
            Stream::Zstd(z, Durability::Sync) => z.finish()?.sync_all(),
            Stream::Zstd(z, Durability::InPlace) => z.finish().map(drop),
        }
    }
}
