//! Test support: the deployer binary, scratch folders, a stripped serve
//! binary for images, and the test registries.

#![allow(dead_code)] // each test target uses a different part of this module

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root (where `models/` lives).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn model(name: &str) -> PathBuf {
    repo_root().join("models").join(name)
}

/// A run of `deployer ARGS`: exit code, stdout, stderr.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

pub fn deployer(args: &[&str], envs: &[(&str, &str)]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_deployer"))
        .args(args)
        .envs(envs.iter().copied())
        // The host's Docker credentials must not leak into tests.
        .env("DOCKER_CONFIG", "/nonexistent")
        .output()
        .expect("run deployer");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A scratch folder, removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("deployer-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Copies a model folder (recursively) to `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// `deployer package -o OUTPUT --tag t1 MODELS... --serve-binary SERVE`,
/// recording a fixed commit.
pub fn package(output: &Path, models: &[&Path], serve: &Path) -> Run {
    let mut args = vec!["package", "-o", output.to_str().unwrap(), "--tag", "t1"];
    args.extend(models.iter().map(|m| m.to_str().unwrap()));
    args.extend(["--serve-binary", serve.to_str().unwrap()]);
    deployer(&args, &[("MODELOPS_GIT_COMMIT", "0123abc")])
}

/// A copy of iris named `name` in `scratch` whose ONNX file is garbage.
pub fn broken_model(scratch: &Scratch, name: &str) -> PathBuf {
    let dir = scratch.path(name);
    copy_dir(&model("iris"), &dir);
    std::fs::write(dir.join("1/model.onnx"), b"not an onnx file").unwrap();
    dir
}

/// The serve binary cargo built next to the deployer (what `deployer`
/// finds by default).
pub fn serve_binary() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_deployer")).with_file_name("serve");
    assert!(
        path.is_file(),
        "{} is missing: build it first (`cargo build -p serve`; scripts/test does)",
        path.display()
    );
    path
}

/// The serve binary without its debug info (170 MB → 74 MB for a debug
/// build): images in tests build and push faster. Made once per serve
/// build, in cargo's scratch folder for tests (named by the binary's size
/// and mtime; written under a temporary name and renamed, as tests run in
/// parallel processes).
pub fn stripped_serve() -> PathBuf {
    let serve = serve_binary();
    let meta = std::fs::metadata(&serve).unwrap();
    let mtime = meta
        .modified()
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let out = dir.join(format!(
        "serve-stripped-{}-{}",
        meta.len(),
        mtime.as_nanos()
    ));
    if !out.is_file() {
        let partial = dir.join(format!("serve-stripped-{}.partial", std::process::id()));
        let status = Command::new("strip")
            .arg("--strip-debug")
            .arg("-o")
            .arg(&partial)
            .arg(&serve)
            .status()
            .expect("run strip");
        assert!(status.success());
        std::fs::rename(&partial, &out).unwrap();
    }
    out
}

/// A registry of scripts/registry: the one scripts/test started (named in
/// the environment), else one started here and stopped when dropped.
pub struct Registry {
    pub address: String,
    /// For `tls`: the state folder holding ca.pem, username, password.
    pub state: PathBuf,
    owned: bool,
}

impl Registry {
    pub fn get(mode: &str) -> Registry {
        let var = format!("MODELOPS_TEST_REGISTRY_{}_STATE", mode.to_uppercase());
        if let Some(state) = std::env::var_os(&var) {
            let state = PathBuf::from(state);
            let address = std::fs::read_to_string(state.join("address")).unwrap();
            return Registry {
                address: address.trim().to_string(),
                state,
                owned: false,
            };
        }
        let state = std::env::temp_dir().join(format!(
            "deployer-test-registry-{mode}-{}",
            std::process::id()
        ));
        let out = Command::new(repo_root().join("scripts/registry"))
            .arg("start")
            .arg(&state)
            .arg(mode)
            .output()
            .expect("run scripts/registry");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Registry {
            address: String::from_utf8_lossy(&out.stdout).trim().to_string(),
            state,
            owned: true,
        }
    }

    pub fn secret(&self, name: &str) -> String {
        std::fs::read_to_string(self.state.join(name))
            .unwrap()
            .trim()
            .to_string()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if self.owned {
            let _ = Command::new(repo_root().join("scripts/registry"))
                .arg("stop")
                .arg(&self.state)
                .status();
            let _ = std::fs::remove_dir_all(&self.state);
        }
    }
}

/// Runs a command, panicking with its output unless it succeeds; returns stdout.
pub fn run_ok(command: &mut Command) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
