//! The real Python `kubernetes` client (installed by scripts/setup.sh into `.venv`) against
//! `fleetdb serve`, on the embedded store and on etcd.

mod support;

use std::path::PathBuf;
use std::process::Command;

use support::{Backend, Fleetdb};

/// The Python with the `kubernetes` package: `$FLEETDB_PYTHON`, else the repository's `.venv`.
fn python() -> PathBuf {
    if let Some(python) = std::env::var_os("FLEETDB_PYTHON") {
        return PathBuf::from(python);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    assert!(
        venv.exists(),
        "{} is missing: run scripts/setup.sh, which creates it with the Python packages the tests need",
        venv.display()
    );
    venv
}

fn run_scenarios(backend: Backend) {
    let server = Fleetdb::start(backend);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/client_scenarios.py");
    let output = Command::new(python())
        .arg(script)
        .arg(server.kubeconfig())
        .output()
        .expect("run python");
    assert!(
        output.status.success() && String::from_utf8_lossy(&output.stdout).contains("OK"),
        "python scenarios failed:\nstdout: {}\nstderr: {}\nserver log:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        server.log()
    );
}

#[test]
fn python_client_on_the_embedded_store() {
    run_scenarios(Backend::Embedded);
}

#[test]
fn python_client_on_etcd() {
    run_scenarios(Backend::Etcd);
}
