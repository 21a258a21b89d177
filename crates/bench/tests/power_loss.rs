//! Power-loss test of the embedded store. `kill -9` keeps whatever the process wrote, synced
//! or not (the kernel still has it); a power cut keeps only what was synced. The crash writer
//! runs with a small shim preloaded (`power_loss/shim.c`, compiled here with the system C
//! compiler) that keeps, for every file of the store, a copy as of its last fsync; after each
//! kill, every file is put back to that copy — or emptied when it was never synced — and the
//! store must open and hold every write it acknowledged. Cut points are random, from moments
//! after start-up to several seconds in, past the checkpoints that retire journal segments.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rand::Rng;

mod support;

use support::{run_and_kill, verify};

/// Power cuts per test run.
const CUTS: u64 = 20;

/// Compiles the shim into `dir`; the system C compiler is part of the build tools
/// (`scripts/setup.sh`), so a missing one is a failure, not a skip.
fn build_shim(dir: &Path) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/power_loss/shim.c");
    let output = dir.join("power-loss-shim.so");
    let compiler = ["cc", "gcc", "clang"]
        .into_iter()
        .find(|cc| Command::new(cc).arg("--version").output().is_ok())
        .expect("no C compiler (cc, gcc or clang): install gcc (scripts/setup.sh does)");
    let status = Command::new(compiler)
        .args([
            "-shared",
            "-fPIC",
            "-O2",
            "-Wall",
            "-Wno-format-truncation",
            "-o",
        ])
        .arg(&output)
        .arg(&source)
        .arg("-ldl")
        .status()
        .expect("run the C compiler");
    assert!(status.success(), "the power-loss shim did not compile");
    output
}

/// The shim's name for a file's last synced copy (see `shadow_of` in the shim).
fn shadow_of(data: &Path, shadows: &Path, file: &Path) -> PathBuf {
    let relative = file
        .strip_prefix(data)
        .unwrap()
        .to_string_lossy()
        .replace('/', "%");
    shadows.join(relative)
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// The power cut: every file back to its last synced state; never-synced files empty.
fn cut_power(data: &Path, shadows: &Path) -> (usize, usize) {
    let mut files = Vec::new();
    files_under(data, &mut files);
    let (mut restored, mut emptied) = (0, 0);
    for file in files {
        let shadow = shadow_of(data, shadows, &file);
        match std::fs::read(&shadow) {
            Ok(synced) => {
                std::fs::write(&file, synced).unwrap();
                restored += 1;
            }
            Err(_) => {
                std::fs::write(&file, b"").unwrap();
                emptied += 1;
            }
        }
    }
    (restored, emptied)
}

/// After the checks reopened and closed the store cleanly, everything on disk is durable:
/// the shadows become the files as they are.
fn everything_synced(data: &Path, shadows: &Path) {
    for entry in std::fs::read_dir(shadows).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    let mut files = Vec::new();
    files_under(data, &mut files);
    for file in files {
        std::fs::copy(&file, shadow_of(data, shadows, &file)).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_power_loss() {
    let work = tempfile::tempdir().unwrap();
    let shim = build_shim(work.path());
    let data = work.path().join("data").canonicalize().unwrap_or_else(|_| {
        std::fs::create_dir_all(work.path().join("data")).unwrap();
        work.path().join("data").canonicalize().unwrap()
    });
    let shadows = work.path().join("synced");
    std::fs::create_dir_all(&shadows).unwrap();
    let env = [
        ("LD_PRELOAD", shim.as_os_str()),
        ("FLEETDB_POWERLOSS_DIR", data.as_os_str()),
        ("FLEETDB_POWERLOSS_SHADOW", shadows.as_os_str()),
    ];
    let mut rng = rand::rng();
    let mut acks = Vec::new();
    let (mut restored, mut emptied) = (0, 0);
    for run in 1..=CUTS {
        let alive = Duration::from_millis(rng.random_range(300..4_000));
        let new = run_and_kill(&data, run, alive, &env);
        assert!(
            !new.is_empty(),
            "run {run} acknowledged nothing before the cut"
        );
        acks.extend(new);
        let (r, e) = cut_power(&data, &shadows);
        restored += r;
        emptied += e;
        verify(&data, &acks).await;
        everything_synced(&data, &shadows);
    }
    assert!(
        restored > 0,
        "the shim kept no synced copies: it was not loaded"
    );
    eprintln!(
        "{CUTS} power cuts, {} acknowledged writes checked; files put back to their last sync {restored} times, emptied {emptied} times",
        acks.len()
    );
}
