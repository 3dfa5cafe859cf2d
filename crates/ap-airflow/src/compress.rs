//! Deterministic, parallel layer compression.
//!
//! **gzip** is written the way `pigz` writes it: one gzip member whose deflate stream is the concatenation of
//! 1 MiB chunks compressed apart (raw deflate, each primed with the previous chunk's last 32 KiB, ended by a sync
//! flush, the last one by the final block), with the CRC-32 and size of the whole input in the trailer. Any gzip
//! reader (Go's, zlib, `gunzip`) reads it as one ordinary stream. Chunk boundaries depend only on the input, never
//! on the number of threads, so the same layer always yields the same bytes and the same digest for one compressor
//! build (flate2 on zlib-rs, pinned in Cargo.lock; `gzip_bytes_are_pinned` notices a change); the header carries no
//! name and mtime 0. Level 7 of zlib-rs: the size of zlib's level 6 (what `docker push` writes, near enough) in
//! 0.7× its time.
//!
//! Chunks compress on every core while the caller reads the next ones: a single 1.8 GB layer uses both CPUs.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use sha2::{Digest as _, Sha256};

use crate::local::Blob;

pub const GZIP_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const ZSTD_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// zstd: independent frames of this many input bytes (with their content size and checksum), concatenated — a
/// valid zstd stream that every decoder reads as one; frame boundaries depend on the input only.
const ZSTD_CHUNK: usize = 8 << 20;
const ZSTD_LEVEL: i32 = 9;

const CHUNK: usize = 1 << 20;
const LEVEL: i32 = 7;
const DICTIONARY: bool = true;
/// Deflate's window: what a dictionary can be used for.
const WINDOW: usize = 32 << 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Compression {
    Gzip,
    /// Not pulled by Docker before 23.0; containerd 1.5+, podman and skopeo read it.
    Zstd,
}

impl Compression {
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::Gzip => GZIP_LAYER,
            Compression::Zstd => ZSTD_LAYER,
        }
    }

    /// Names this compressor build: the digest of a fixed sample's compressed bytes. Cached compressed digests
    /// are filed under it, so a compressor upgrade that changes output can never reuse stale digests.
    pub fn fingerprint(self) -> String {
        let sample: Vec<u8> = (0..(3 * CHUNK / 2) as u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8 & 0x3f)
            .collect();
        let mut out = Vec::new();
        let r = compress(self, &sample[..], sample.len() as u64, &mut out, 1)
            .expect("in-memory compression");
        format!("{:?}-{}", self, &r.compressed.digest[7..23]).to_lowercase()
    }
}

/// What compressing a layer found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compressed {
    /// The uncompressed input (`diff_id`).
    pub uncompressed: Blob,
    /// The compressed output (the registry blob).
    pub compressed: Blob,
}

/// Compresses exactly `size` bytes of `input` into `out` with `threads` workers (0: one per CPU).
pub fn compress(
    kind: Compression,
    input: impl Read,
    size: u64,
    out: &mut (dyn Write + Send),
    threads: usize,
) -> io::Result<Compressed> {
    compress_with(input, size, out, threads, Params::of(kind))
}

/// The knobs of the formats above; `Params::of(kind)` is the one format publish writes (changing it changes every
/// digest: the fingerprint follows).
#[derive(Debug, Clone, Copy)]
pub struct Params {
    pub kind: Compression,
    pub chunk: usize,
    pub level: i32,
    /// Prime each chunk with the last 32 KiB of the previous one (as pigz does without -i).
    pub dictionary: bool,
}

impl Params {
    pub fn of(kind: Compression) -> Params {
        match kind {
            Compression::Gzip => Params {
                kind,
                chunk: CHUNK,
                level: LEVEL,
                dictionary: DICTIONARY,
            },
            Compression::Zstd => Params {
                kind,
                chunk: ZSTD_CHUNK,
                level: ZSTD_LEVEL,
                dictionary: false,
            },
        }
    }
}

pub fn compress_with(
    mut input: impl Read,
    size: u64,
    out: &mut (dyn Write + Send),
    threads: usize,
    params: Params,
) -> io::Result<Compressed> {
    let threads = if threads == 0 {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    } else {
        threads
    };
    let (work_tx, work_rx) = mpsc::sync_channel::<(u64, Vec<u8>, Vec<u8>, bool)>(threads * 2);
    let work_rx = Arc::new(Mutex::new(work_rx));
    let (done_tx, done_rx) = mpsc::sync_channel::<(u64, Vec<u8>)>(threads * 2);
    std::thread::scope(|s| {
        for _ in 0..threads {
            let rx = work_rx.clone();
            let tx = done_tx.clone();
            s.spawn(move || loop {
                let job = rx.lock().expect("queue").recv();
                let Ok((i, dict, chunk, last)) = job else {
                    return;
                };
                let packed = match params.kind {
                    Compression::Gzip => deflate_chunk(&dict, &chunk, last, params.level as u32),
                    Compression::Zstd => zstd_frame(&chunk, params.level),
                };
                if tx.send((i, packed)).is_err() {
                    return;
                }
            });
        }
        let writer = s.spawn(move || -> io::Result<Blob> {
            let mut h = Sha256::new();
            let mut n = 0u64;
            let mut put = |b: &[u8]| -> io::Result<()> {
                h.update(b);
                n += b.len() as u64;
                out.write_all(b)
            };
            if params.kind == Compression::Gzip {
                // Magic, deflate, no flags, mtime 0, no extra flags, OS "unknown": the same bytes everywhere.
                put(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255])?;
            }
            let mut pending = BTreeMap::new();
            let mut next = 0u64;
            for (i, data) in done_rx.iter() {
                pending.insert(i, data);
                while let Some(d) = pending.remove(&next) {
                    put(&d)?;
                    next += 1;
                }
            }
            if !pending.is_empty() {
                return Err(io::Error::other("a compression worker stopped"));
            }
            out.flush()?;
            Ok(Blob {
                digest: format!("sha256:{}", hex::encode(h.finalize())),
                size: n,
            })
        });
        let mut in_hash = Sha256::new();
        let mut crc = crc32fast::Hasher::new();
        let mut left = size;
        let mut i = 0u64;
        let mut dict = Vec::new();
        let read_result = loop {
            let want = left.min(params.chunk as u64) as usize;
            let mut chunk = vec![0u8; want];
            if let Err(e) = input.read_exact(&mut chunk) {
                break Err(e);
            }
            in_hash.update(&chunk);
            crc.update(&chunk);
            left -= want as u64;
            let last = left == 0;
            let next_dict = if params.dictionary {
                chunk[chunk.len().saturating_sub(WINDOW)..].to_vec()
            } else {
                Vec::new()
            };
            if work_tx
                .send((i, std::mem::replace(&mut dict, next_dict), chunk, last))
                .is_err()
            {
                break Err(io::Error::other("compression workers stopped"));
            }
            i += 1;
            if last {
                break Ok(());
            }
        };
        drop(work_tx);
        if read_result.is_ok() && params.kind == Compression::Gzip {
            // The trailer, in order after the last chunk: CRC-32 and size (mod 2^32) of the input.
            let trailer = [crc.finalize().to_le_bytes(), (size as u32).to_le_bytes()].concat();
            let _ = done_tx.send((i, trailer));
        }
        drop(done_tx);
        let written = writer.join().expect("writer thread");
        read_result?;
        Ok(Compressed {
            uncompressed: Blob {
                digest: format!("sha256:{}", hex::encode(in_hash.finalize())),
                size,
            },
            compressed: written?,
        })
    })
}

/// One chunk as a zstd frame with its content size and checksum.
fn zstd_frame(chunk: &[u8], level: i32) -> Vec<u8> {
    let mut c = zstd::bulk::Compressor::new(level).expect("a zstd context");
    c.include_checksum(true).expect("a zstd parameter");
    c.include_contentsize(true).expect("a zstd parameter");
    c.compress(chunk).expect("zstd never fails on valid input")
}

/// One chunk as raw deflate: a sync flush ends every chunk but the last, which carries the final block.
fn deflate_chunk(dict: &[u8], chunk: &[u8], last: bool, level: u32) -> Vec<u8> {
    let mut c = flate2::Compress::new(flate2::Compression::new(level), false);
    if !dict.is_empty() {
        c.set_dictionary(dict)
            .expect("a raw deflate stream takes a dictionary before data");
    }
    let mut out = Vec::with_capacity(chunk.len() / 3 + 1024);
    let flush = if last {
        flate2::FlushCompress::Finish
    } else {
        flate2::FlushCompress::Sync
    };
    loop {
        let consumed = c.total_in() as usize;
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity().max(4096));
        }
        let status = c
            .compress_vec(&chunk[consumed..], &mut out, flush)
            .expect("deflate never fails on valid input");
        let done_in = c.total_in() as usize == chunk.len();
        match status {
            flate2::Status::StreamEnd => return out,
            _ if done_in && !last && out.capacity() > out.len() => return out,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: usize) -> Vec<u8> {
        // Compressible but not trivial: words from a small alphabet with noise.
        (0..n as u32)
            .map(|i| b"abcdefgh \n"[((i.wrapping_mul(2654435761) >> 20) % 10) as usize])
            .collect()
    }

    fn gz(data: &[u8], threads: usize) -> (Vec<u8>, Compressed) {
        let mut out = Vec::new();
        let c = compress(
            Compression::Gzip,
            data,
            data.len() as u64,
            &mut out,
            threads,
        )
        .unwrap();
        (out, c)
    }

    #[test]
    fn gzip_round_trips_and_is_deterministic_across_thread_counts() {
        for n in [0, 1, 1000, CHUNK, CHUNK + 1, 3 * CHUNK + 12345] {
            let data = sample(n);
            let (a, ca) = gz(&data, 1);
            let (b, cb) = gz(&data, 3);
            assert_eq!(a, b, "size {n}");
            assert_eq!(ca, cb);
            assert_eq!(ca.compressed.size, a.len() as u64);
            assert_eq!(ca.compressed.digest, crate::digest::sha256_digest(&a));
            assert_eq!(ca.uncompressed.digest, crate::digest::sha256_digest(&data));
            // One ordinary gzip member: the single-member decoder reads it all.
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&a[..])
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, data, "size {n}");
            if n > 1000 {
                assert!(a.len() < n / 2, "compresses: {} of {n}", a.len());
            }
        }
    }

    #[test]
    fn zstd_frames_read_back_as_one_stream_and_are_deterministic() {
        for n in [0, 1000, ZSTD_CHUNK + 5] {
            let data = sample(n);
            let (mut a, mut b) = (Vec::new(), Vec::new());
            let ca = compress(Compression::Zstd, &data[..], n as u64, &mut a, 1).unwrap();
            let cb = compress(Compression::Zstd, &data[..], n as u64, &mut b, 3).unwrap();
            assert_eq!((a.clone(), ca.clone()), (b, cb));
            assert_eq!(ca.compressed.size, a.len() as u64);
            assert_eq!(zstd::stream::decode_all(&a[..]).unwrap(), data, "size {n}");
        }
    }

    #[test]
    fn gunzip_reads_it() {
        let data = sample(2 * CHUNK + 7);
        let (a, _) = gz(&data, 2);
        let mut child = std::process::Command::new("gzip")
            .args(["-dc"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let t = std::thread::spawn(move || stdin.write_all(&a));
        let out = child.wait_with_output().unwrap();
        t.join().unwrap().unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout, data);
    }

    #[test]
    fn short_input_is_an_error() {
        let mut out = Vec::new();
        assert!(compress(Compression::Gzip, &b"abc"[..], 10, &mut out, 2).is_err());
    }

    /// Sizes and times of format variants on a real layer: `AP_AIRFLOW_SAMPLE=layer.tar cargo test --release
    /// -p ap-airflow --lib compress::tests::variants -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn variants() {
        let path = std::env::var("AP_AIRFLOW_SAMPLE").expect("AP_AIRFLOW_SAMPLE");
        let limit: u64 =
            std::env::var("AP_AIRFLOW_SAMPLE_BYTES").map_or(512 << 20, |v| v.parse().unwrap());
        let size = std::fs::metadata(&path).unwrap().len().min(limit);
        for (kind, chunk, level, dictionary) in [
            (Compression::Gzip, 1 << 20, 6, true),
            (Compression::Gzip, 1 << 20, 7, true),
            (Compression::Zstd, 8 << 20, 3, false),
            (Compression::Zstd, 8 << 20, 6, false),
            (Compression::Zstd, 8 << 20, 9, false),
            (Compression::Zstd, 8 << 20, 12, false),
        ] {
            let f = std::fs::File::open(&path).unwrap().take(size);
            let t = std::time::Instant::now();
            let c = compress_with(
                f,
                size,
                &mut io::sink(),
                0,
                Params {
                    kind,
                    chunk,
                    level,
                    dictionary,
                },
            )
            .unwrap();
            println!(
                "{kind:?} chunk {chunk} level {level} dict {dictionary}: {} of {size} in {:.1} s",
                c.compressed.size,
                t.elapsed().as_secs_f64()
            );
        }
    }

    /// Words from a small vocabulary and runs of noise: matches of every length, literals, window slides.
    fn text_like(n: usize) -> Vec<u8> {
        let words: Vec<String> = (0..400u32)
            .map(|i| format!("w{}{} ", i * 7919 % 1000, "x".repeat((i % 13) as usize)))
            .collect();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut out = Vec::with_capacity(n + 64);
        while out.len() < n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if x % 17 == 0 {
                out.extend(x.to_le_bytes());
            } else {
                out.extend(words[(x % 400) as usize].as_bytes());
            }
        }
        out.truncate(n);
        out
    }

    const PINNED: &str = "sha256:984eb5d46527237089e25a8696ca3a6ae4ed8738dc542ed69ea93844891d0e1c";

    /// The gzip bytes of a fixed sample, pinned: a compressor update that changes output (every published digest
    /// would change) fails here, and so would output that depends on the CPU's SIMD paths (see the next test).
    #[test]
    fn gzip_bytes_are_pinned() {
        let data = text_like(5 << 20);
        let (packed, c) = gz(&data, 2);
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&packed[..])
            .read_to_end(&mut back)
            .unwrap();
        assert!(back == data, "round trip");
        assert_eq!(c.compressed.digest, PINNED, "{} bytes", c.compressed.size);
    }

    /// The same bytes on a CPU without SSE4 or AVX2: this test binary's pinned test again under qemu's baseline
    /// x86-64 CPU, where zlib-rs takes its portable paths (needs qemu-user-static; scripts/test runs it).
    #[test]
    #[ignore = "needs qemu-x86_64-static (qemu-user-static): scripts/test runs it"]
    #[cfg(target_arch = "x86_64")]
    fn gzip_bytes_are_the_same_without_simd() {
        let out = std::process::Command::new("qemu-x86_64-static")
            .args(["-cpu", "qemu64"])
            .arg(std::env::current_exe().unwrap())
            .args(["compress::tests::gzip_bytes_are_pinned", "--exact"])
            .output()
            .expect("qemu-x86_64-static (apt-get install qemu-user-static)");
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && said.contains("1 passed"),
            "{said}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn fingerprint_is_stable() {
        assert_eq!(
            Compression::Gzip.fingerprint(),
            Compression::Gzip.fingerprint()
        );
        assert!(Compression::Gzip.fingerprint().starts_with("gzip-"));
    }
}
