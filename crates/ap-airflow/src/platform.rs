//! The architectures the images are built for, and how an image of each is named in the local engine.
//!
//! Docker 20.10 keeps one architecture per tag, so the engine's native architecture keeps the plain tags
//! (`3.3.2-1-trixie`) and any other gets its name as a suffix (`3.3.2-1-trixie-arm64`). In a registry both sit
//! under the plain tag, in one image index; the suffixed names are local only and never published.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Platform {
    Amd64,
    Arm64,
}

impl Platform {
    pub const ALL: [Platform; 2] = [Platform::Amd64, Platform::Arm64];

    /// The architecture as Docker, OCI and Go name it (`GOARCH`).
    pub fn arch(self) -> &'static str {
        match self {
            Platform::Amd64 => "amd64",
            Platform::Arm64 => "arm64",
        }
    }

    /// `linux/<arch>`, as `docker build --platform` and OCI indexes spell it.
    pub fn docker(self) -> String {
        format!("linux/{}", self.arch())
    }

    /// Debian's name for the architecture (debootstrap --arch, dpkg).
    pub fn debian(self) -> &'static str {
        self.arch()
    }

    /// The Rust target triple of the in-image runtime.
    pub fn rust_target(self) -> &'static str {
        match self {
            Platform::Amd64 => "x86_64-unknown-linux-gnu",
            Platform::Arm64 => "aarch64-unknown-linux-gnu",
        }
    }

    /// What `uname -m` says inside a container of this platform.
    pub fn machine(self) -> &'static str {
        match self {
            Platform::Amd64 => "x86_64",
            Platform::Arm64 => "aarch64",
        }
    }

    /// The platform this program was built for: the engine's native architecture on every host we support.
    pub fn native() -> Platform {
        if cfg!(target_arch = "aarch64") {
            Platform::Arm64
        } else {
            Platform::Amd64
        }
    }

    /// Suffix of a local tag: empty for the native architecture, `-<arch>` otherwise.
    pub fn local_suffix(self) -> String {
        if self == Platform::native() {
            String::new()
        } else {
            format!("-{}", self.arch())
        }
    }

    /// The local name of a tag's image of this platform: `<tag>` or `<tag>-<arch>`.
    pub fn local_tag(self, tag: &str) -> String {
        format!("{tag}{}", self.local_suffix())
    }

    /// The architecture of a 64-bit little-endian ELF file from its first 20 bytes (`e_machine`), if one of ours.
    pub fn of_elf(head: &[u8]) -> Option<Platform> {
        if head.len() < 20 || &head[..4] != b"\x7fELF" || head[4] != 2 || head[5] != 1 {
            return None;
        }
        match u16::from_le_bytes([head[18], head[19]]) {
            62 => Some(Platform::Amd64),
            183 => Some(Platform::Arm64),
            _ => None,
        }
    }

    /// Whether this host can run the platform's binaries: natively, or under qemu through binfmt_misc. The error
    /// says what to install; checked before any debootstrap or build starts under emulation.
    pub fn check_runnable(self) -> Result<(), String> {
        if self == Platform::native() {
            return Ok(());
        }
        let entry = match self {
            Platform::Amd64 => "qemu-x86_64",
            Platform::Arm64 => "qemu-aarch64",
        };
        let path = format!("/proc/sys/fs/binfmt_misc/{entry}");
        match std::fs::read_to_string(&path) {
            Ok(s) if s.starts_with("enabled") && s.lines().any(|l| l.starts_with("flags:") && l.contains('F')) => Ok(()),
            Ok(_) => Err(format!("{self} images need emulation, but {path} is disabled or lacks the F flag (update-binfmts --enable {entry}; scripts/setup-host)")),
            Err(_) => Err(format!("{self} images need emulation: no {path} (install qemu-user-static and binfmt-support, mount binfmt_misc; scripts/setup-host does)")),
        }
    }

    /// Parses a comma-separated `--platform` list (`linux/amd64,linux/arm64`; `arm64` alone is accepted).
    pub fn parse_list(s: &str) -> Result<Vec<Platform>, String> {
        s.split(',').map(|p| p.trim().parse()).collect()
    }

    /// The platforms to build, deduplicated, the native one first (an emulated build takes its bytecode list
    /// from the native image); none given: the native one.
    pub fn ordered(given: &[Platform]) -> Vec<Platform> {
        let mut out = given.to_vec();
        if out.is_empty() {
            out.push(Platform::native());
        }
        out.sort_by_key(|p| (*p != Platform::native(), *p));
        out.dedup();
        out
    }
}

impl FromStr for Platform {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.strip_prefix("linux/").unwrap_or(s) {
            "amd64" | "x86_64" => Ok(Platform::Amd64),
            "arm64" | "aarch64" | "arm64/v8" => Ok(Platform::Arm64),
            "" => Err("empty platform (expected linux/amd64 or linux/arm64)".to_owned()),
            other => Err(format!(
                "unsupported platform {other:?} (expected linux/amd64 or linux/arm64)"
            )),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "linux/{}", self.arch())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(Platform::Arm64.docker(), "linux/arm64");
        assert_eq!(Platform::Arm64.rust_target(), "aarch64-unknown-linux-gnu");
        assert_eq!(Platform::Amd64.machine(), "x86_64");
        assert_eq!("aarch64".parse::<Platform>(), Ok(Platform::Arm64));
        assert!("linux/s390x"
            .parse::<Platform>()
            .unwrap_err()
            .contains("s390x"));
    }

    #[test]
    fn the_native_architecture_keeps_the_plain_tag() {
        let native = Platform::native();
        assert_eq!(native.local_tag("3.3.2-1-trixie"), "3.3.2-1-trixie");
        let other = Platform::ALL.into_iter().find(|p| *p != native).unwrap();
        assert_eq!(
            other.local_tag("3.3.2-1-trixie-onbuild"),
            format!("3.3.2-1-trixie-onbuild-{}", other.arch())
        );
    }

    #[test]
    fn elf_headers_name_their_architecture() {
        let mut head = [0u8; 20];
        head[..6].copy_from_slice(b"\x7fELF\x02\x01");
        head[18] = 183;
        assert_eq!(Platform::of_elf(&head), Some(Platform::Arm64));
        head[18] = 62;
        assert_eq!(Platform::of_elf(&head), Some(Platform::Amd64));
        head[18] = 40; // 32-bit ARM
        assert_eq!(Platform::of_elf(&head), None);
        assert_eq!(Platform::of_elf(b"#!/bin/sh\n"), None);
    }

    #[test]
    fn lists_are_deduplicated_native_first() {
        let all =
            Platform::ordered(&Platform::parse_list("linux/arm64, linux/amd64,arm64").unwrap());
        assert_eq!(all.len(), 2);
        assert_eq!(all[0], Platform::native());
        assert_eq!(Platform::ordered(&[]), [Platform::native()]);
        assert!(Platform::parse_list("linux/arm64,").is_err());
    }
}
