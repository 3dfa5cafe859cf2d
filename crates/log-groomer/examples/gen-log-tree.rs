//! Benchmark fixture (not shipped): an Airflow-style log tree of about FILES files, half of them expired.
//!
//! `gen-log-tree DIR FILES` writes `DIR/dag_id=dag_NNN/run_id=scheduled__…/task_id=task_NN/attempt=N.log`:
//! 200 runs per DAG, 10 tasks per run, 2 attempts per task. The older half of each DAG's runs is 30 days old, the
//! newer half 1 day old, so with a 15-day retention half the files and their run folders go.

use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

const RUNS: usize = 200;
const TASKS: usize = 10;
const ATTEMPTS: usize = 2;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(dir), Some(files)) = (
        args.get(1),
        args.get(2).and_then(|n| n.parse::<usize>().ok()),
    ) else {
        eprintln!("usage: gen-log-tree DIR FILES");
        std::process::exit(2);
    };
    let dags = files.div_ceil(RUNS * TASKS * ATTEMPTS).max(1);
    let now = SystemTime::now();
    let old = now - Duration::from_secs(30 * 86_400);
    let young = now - Duration::from_secs(86_400);
    let body = b"[2026-11-01T00:00:00.000+0000] {taskinstance.py:1157} INFO - Dependencies all met for task\n".repeat(2);
    let mut n = 0;
    for d in 0..dags {
        for r in 0..RUNS {
            let mtime = if r < RUNS / 2 { old } else { young };
            for t in 0..TASKS {
                let folder: PathBuf = [
                    dir,
                    &format!("dag_id=dag_{d:04}"),
                    &format!("run_id=scheduled__2026-10-{r:03}T00:00:00+00:00"),
                    &format!("task_id=task_{t:02}"),
                ]
                .iter()
                .collect();
                fs::create_dir_all(&folder).expect("create folder");
                for a in 1..=ATTEMPTS {
                    let mut f = fs::File::create(folder.join(format!("attempt={a}.log")))
                        .expect("create file");
                    f.write_all(&body).expect("write");
                    f.set_modified(mtime).expect("set mtime");
                    n += 1;
                }
            }
        }
    }
    println!("{n}");
}
