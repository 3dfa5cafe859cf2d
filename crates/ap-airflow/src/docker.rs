//! The Docker engine through its CLI (`docker` on PATH; DOCKER_HOST and the CLI's contexts are honoured), and
//! long-running steps whose output goes to a log file while the terminal shows progress.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use crate::platform::Platform;

/// Lines of a failing step's output shown on the terminal; the rest stays in the log file.
const TAIL_LINES: usize = 40;

pub fn docker_program() -> String {
    std::env::var("AP_AIRFLOW_DOCKER").unwrap_or_else(|_| "docker".into())
}

/// A `docker` command for the legacy builder (no buildx here; it also runs ONBUILD triggers).
pub fn docker() -> Command {
    let mut c = Command::new(docker_program());
    c.env("DOCKER_BUILDKIT", "0");
    c
}

/// Fails with one line when the engine cannot be reached.
pub fn ping() -> anyhow::Result<String> {
    let out = docker()
        .args(["version", "--format", "{{.Server.Version}}"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run `{}`: {e}", docker_program()))?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() || version.is_empty() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
        let host = std::env::var("DOCKER_HOST").unwrap_or_else(|_| "the default socket".into());
        bail!(
            "Docker engine not reachable at {}: {}",
            crate::output::redact(&host),
            last.trim()
        );
    }
    Ok(version)
}

pub fn image_exists(name: &str) -> anyhow::Result<bool> {
    let status = docker()
        .args(["image", "inspect", "--format", "{{.Id}}", name])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("cannot run docker")?;
    Ok(status.success())
}

/// `docker image inspect` of one image as JSON.
pub fn inspect_image(name: &str) -> anyhow::Result<serde_json::Value> {
    let out = docker()
        // `--`: a name is never read as an option (`--format=…`).
        .args(["image", "inspect", "--", name])
        .stdin(Stdio::null())
        .output()
        .context("cannot run docker")?;
    if !out.status.success() {
        bail!("no image {name} in the local engine");
    }
    let mut v: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("docker image inspect printed no JSON")?;
    match v.as_array_mut().and_then(|a| a.pop()) {
        Some(first) => Ok(first),
        None => bail!("no image {name} in the local engine"),
    }
}

/// Size in bytes as the engine reports it (`docker image inspect -f {{.Size}}`).
pub fn image_size(name: &str) -> Option<u64> {
    inspect_image(name).ok()?.get("Size")?.as_u64()
}

/// Runs `cmd` once, quietly; true when it succeeded.
pub fn quiet(mut cmd: Command) -> bool {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Where a run's output goes, and how progress is shown.
pub struct Steps {
    log_path: PathBuf,
    log: Arc<Mutex<File>>,
    tty: bool,
}

impl Steps {
    pub fn new(log_path: &Path) -> anyhow::Result<Self> {
        if let Some(dir) = log_path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let log = File::create(log_path)
            .with_context(|| format!("cannot create log file {}", log_path.display()))?;
        Ok(Steps {
            log_path: log_path.to_owned(),
            log: Arc::new(Mutex::new(log)),
            tty: std::io::stderr().is_terminal(),
        })
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// A note on the terminal and in the log.
    pub fn note(&self, text: &str) {
        eprintln!("{text}");
        let _ = writeln!(self.log.lock().unwrap(), "## {text}");
    }

    /// Runs one step: its output goes to the log; the terminal shows a spinner (or, without a terminal, the
    /// Dockerfile step lines); on failure, the last lines of output and where the full log is.
    pub fn run(&self, title: &str, mut cmd: Command) -> anyhow::Result<Duration> {
        let start = Instant::now();
        {
            let mut log = self.log.lock().unwrap();
            let _ = writeln!(log, "\n## {title}\n## $ {}", describe(&cmd));
        }
        let bar = if self.tty {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} {prefix} [{elapsed}] {wide_msg}",
                )
                .expect("static template"),
            );
            bar.set_prefix(title.to_owned());
            bar.enable_steady_tick(Duration::from_millis(120));
            Some(bar)
        } else {
            eprintln!("==> {title}");
            None
        };

        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("{title}: cannot run {}", describe(&cmd)))?;
        let tail = Arc::new(Mutex::new(VecDeque::with_capacity(TAIL_LINES)));
        let readers: Vec<_> = [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        .map(|stream| {
            let (log, tail, bar, tty) = (self.log.clone(), tail.clone(), bar.clone(), self.tty);
            std::thread::spawn(move || {
                for line in BufReader::new(stream).split(b'\n').map_while(Result::ok) {
                    let line = strip_ansi(&String::from_utf8_lossy(&line))
                        .trim_end()
                        .to_owned();
                    let _ = writeln!(log.lock().unwrap(), "{line}");
                    if let Some(step) = progress_line(&line) {
                        match &bar {
                            Some(b) => b.set_message(step),
                            None if !tty => eprintln!("    {step}"),
                            None => {}
                        }
                    }
                    let mut t = tail.lock().unwrap();
                    if t.len() == TAIL_LINES {
                        t.pop_front();
                    }
                    t.push_back(line);
                }
            })
        })
        .collect();
        let status = child.wait().context("waiting for a step")?;
        for r in readers {
            let _ = r.join();
        }
        let took = start.elapsed();
        if let Some(b) = &bar {
            b.finish_and_clear();
        }
        if status.success() {
            eprintln!("ok  {title} ({})", human_duration(took));
            return Ok(took);
        }
        eprintln!("FAILED  {title} ({}), last lines:", human_duration(took));
        for line in tail.lock().unwrap().iter() {
            eprintln!("  | {line}");
        }
        bail!(
            "{title} failed ({status}); full log in {}",
            self.log_path.display()
        )
    }
}

/// The progress worth showing from a tool's output: the legacy builder's `Step N/M : INSTRUCTION`, shortened.
pub fn progress_line(line: &str) -> Option<String> {
    let rest = line.strip_prefix("Step ")?;
    let (count, instr) = rest.split_once(" : ")?;
    if !count.contains('/') {
        return None;
    }
    let instr: String = instr.split_whitespace().collect::<Vec<_>>().join(" ");
    let short: String = instr.chars().take(90).collect();
    let ellipsis = if short.len() < instr.len() { "…" } else { "" };
    Some(format!("step {count}: {short}{ellipsis}"))
}

/// The legacy builder colours its stderr; logs and tails are plain text.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters final-byte (0x40..=0x7e)
            if chars.clone().next() == Some('[') {
                chars.next();
                for d in chars.by_ref() {
                    if ('@'..='~').contains(&d) {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

pub fn human_size(bytes: u64) -> String {
    format!("{:.2} GB", bytes as f64 / 1e9)
}

/// The command line, for the log; build-arg values are kept (they hold no secrets: see build.rs).
fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `docker build` of a context folder with tags and build arguments (the legacy builder, host network).
pub fn docker_build(
    dir: &Path,
    tags: &[String],
    args: &[(String, String)],
    no_cache: bool,
    platform: Platform,
) -> Command {
    let mut cmd = docker();
    cmd.args(["build", "--network", "host", "--force-rm"]);
    // Another architecture builds under emulation (binfmt_misc + qemu-user-static); its base images are local.
    // Such a build runs for long on every core it gets: its steps yield to other work on the machine (a quarter
    // of the default CPU weight), which only matters when both want the CPU.
    if platform != Platform::native() {
        cmd.args(["--platform", &platform.docker(), "--cpu-shares", "256"]);
    }
    if no_cache {
        cmd.arg("--no-cache");
    }
    for t in tags {
        cmd.args(["--tag", t]);
    }
    for (k, v) in args {
        cmd.arg("--build-arg").arg(format!("{k}={v}"));
    }
    cmd.arg(dir);
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_are_the_builders_steps_shortened() {
        assert_eq!(
            progress_line("Step 3/48 : RUN   apt-get update    && x").as_deref(),
            Some("step 3/48: RUN apt-get update && x")
        );
        assert_eq!(progress_line(" ---> Running in 1234"), None);
        assert_eq!(progress_line("Step one : x"), None);
        let long = format!("Step 1/2 : RUN {}", "a".repeat(200));
        assert!(progress_line(&long).unwrap().ends_with('…'));
    }

    #[test]
    fn colours_are_removed() {
        assert_eq!(
            strip_ansi("\u{1b}[91mDownloaded\u{1b}[0m numpy"),
            "Downloaded numpy"
        );
        assert_eq!(strip_ansi("plain"), "plain");
    }

    #[test]
    fn durations_and_sizes_read_well() {
        assert_eq!(human_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(human_duration(Duration::from_secs(245)), "4m05s");
        assert_eq!(human_size(1_234_000_000), "1.23 GB");
    }

    #[test]
    fn a_failing_step_names_its_log_and_keeps_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("x.log");
        let steps = Steps::new(&log).unwrap();
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "for i in $(seq 1 100); do echo line$i; done; exit 3"]);
        let err = steps.run("demo", cmd).unwrap_err().to_string();
        assert!(err.contains("demo failed"), "{err}");
        assert!(err.contains(&log.display().to_string()), "{err}");
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.contains("line1\n") && text.contains("line100\n"));
    }
}
