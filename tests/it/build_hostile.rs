//! Odd and hostile build contexts (issue 16), each built by the native builder and, where
//! the engine runs, by docker's builder on the same context, so the difference is on
//! record. Docker here is 20.10 with the classic builder (no buildx/BuildKit).

use std::path::Path;
use std::process::Command;

use crate::common::{self, GantryServer, run, run_fail};

fn gantry() -> Command {
    let mut c = Command::new(common::gantry_bin());
    c.env("DOCKER_CONFIG", "/nonexistent-gantry-test")
        .env_remove("SOURCE_DATE_EPOCH");
    c
}

fn context(files: &[(&str, &[u8])]) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    for (name, body) in files {
        let p = t.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }
    t
}

/// `docker build` of the context: Ok(image id) or Err(output). `None` without docker.
fn docker_build(ctx: &Path) -> Option<Result<String, String>> {
    if !common::have_docker() {
        return None;
    }
    let out = Command::new("timeout")
        .args(["120", "docker", "build", "-q", "--no-cache"])
        .arg(ctx)
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(124), "docker build hung");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(if out.status.success() {
        let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        Ok(id)
    } else {
        Err(text)
    })
}

/// The files of a docker image built FROM scratch (via create + export).
fn docker_files(id: &str) -> Vec<String> {
    let c = run(Command::new("docker").args(["create", id, "/x"]));
    let c = c.trim();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("docker export {c} | tar t"))
        .output()
        .unwrap();
    let _ = Command::new("docker").args(["rm", c]).output();
    let _ = Command::new("docker").args(["rmi", "-f", id]).output();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect()
}

/// A native build expected to fail with exit 2 and one line; returns the line.
fn native_fails(ctx: &Path) -> String {
    let (_, err, code) = run_fail(
        Command::new("timeout")
            .arg("120")
            .arg(common::gantry_bin())
            .arg("build")
            .arg(ctx)
            .args(["--builder", "native", "--tag", "127.0.0.1:9/x/y:z"]),
    );
    assert_eq!(code, 2, "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    lines[0].to_string()
}

/// A native build pushed to `dest`; returns the paths in its layers.
fn native_files(ctx: &Path, dest: &GantryServer) -> Vec<String> {
    let tag = format!("{}/hostile/ctx:v1", dest.host());
    run(gantry()
        .arg("build")
        .arg(ctx)
        .args(["--builder", "native", "--tag", &tag]));
    let out = tempfile::tempdir().unwrap();
    run(gantry().args([
        "image",
        "copy",
        "-q",
        &tag,
        &format!("oci:{}:v1", out.path().display()),
    ]));
    let inspect: serde_json::Value =
        serde_json::from_str(&run(gantry().args(["image", "inspect", &tag, "--json"]))).unwrap();
    let mut names = Vec::new();
    for l in inspect["layers"].as_array().unwrap() {
        let d = l["digest"].as_str().unwrap().trim_start_matches("sha256:");
        let f = std::fs::File::open(out.path().join("blobs/sha256").join(d)).unwrap();
        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(f));
        for e in ar.entries().unwrap() {
            names.push(e.unwrap().path().unwrap().display().to_string());
        }
    }
    names
}

#[test]
fn a_symlink_to_an_ignored_file_is_refused_like_docker() {
    let ctx = context(&[
        ("Dockerfile", b"FROM scratch\nCOPY envlink /e\n"),
        (".env", b"SECRET=1"),
        (".dockerignore", b".env\n"),
    ]);
    std::os::unix::fs::symlink(".env", ctx.path().join("envlink")).unwrap();
    let line = native_fails(ctx.path());
    assert!(line.contains("Dockerfile:2"), "{line}");
    assert!(
        line.contains("\"envlink\" resolves to \".env\", which .dockerignore excludes"),
        "{line}"
    );
    if let Some(d) = docker_build(ctx.path()) {
        let e = d.expect_err("docker refuses too");
        assert!(e.contains("excluded by .dockerignore"), "{e}");
    }
}

#[test]
fn a_fifo_in_the_context_is_an_error_naming_it() {
    let ctx = context(&[("Dockerfile", b"FROM scratch\nCOPY d /d/\n"), ("d/a", b"a")]);
    let fifo = ctx.path().join("d/pipe");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    // Before: the build waited forever on the FIFO. Now one line naming it.
    let line = native_fails(ctx.path());
    assert!(
        line.contains("\"d/pipe\" is a FIFO, socket or device"),
        "{line}"
    );
    // Docker's classic builder copies the FIFO node itself into the image; we refuse a
    // special file rather than put a device or pipe into an image built from a context.
    if let Some(d) = docker_build(ctx.path()) {
        let files = docker_files(&d.expect("docker copies the FIFO node"));
        assert!(files.iter().any(|f| f == "d/pipe"), "{files:?}");
    }
}

#[test]
fn destinations_are_normalised_like_docker() {
    let dest = GantryServer::registry(&[]);
    let ctx = context(&[
        ("Dockerfile", b"FROM scratch\nCOPY app.txt /../../x\n"),
        ("app.txt", b"app"),
    ]);
    let names = native_files(ctx.path(), &dest);
    assert_eq!(names, ["x"]);
    // BuildKit writes /x. The classic builder of docker 20.10 here trips over its own
    // symlink scoping ("evalSymlinksInScope: …/x is not in …"); either way nothing lands
    // outside the image root.
    match docker_build(ctx.path()) {
        Some(Ok(id)) => {
            let files = docker_files(&id);
            assert!(files.iter().any(|f| f == "x"), "{files:?}");
        }
        Some(Err(e)) => assert!(e.contains("evalSymlinksInScope"), "{e}"),
        None => {}
    }
}

#[test]
fn an_archive_escaping_the_destination_is_a_clear_error() {
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(1);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    // Written raw: the tar crate refuses `..` in set_path.
    let name = b"../../evil.txt";
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.set_cksum();
    tar.append(&h, &b"x"[..]).unwrap();
    let bytes = tar.into_inner().unwrap();
    let ctx = context(&[
        ("Dockerfile", b"FROM scratch\nADD evil.tar /app/\n"),
        ("evil.tar", &bytes),
    ]);
    let line = native_fails(ctx.path());
    assert!(line.contains("Dockerfile:2"), "{line}");
    assert!(
        line.contains("archive entry \"../../evil.txt\" escapes the destination"),
        "{line}"
    );
    // Docker's classic builder clamps the entry into the destination (app/evil.txt);
    // we refuse the archive instead of guessing where its author meant it to go.
    if let Some(d) = docker_build(ctx.path()) {
        let files = docker_files(&d.expect("docker clamps it"));
        assert!(files.iter().any(|f| f == "app/evil.txt"), "{files:?}");
    }
}

#[test]
fn an_unmatched_wildcard_is_allowed_an_unmatched_literal_is_not() {
    let dest = GantryServer::registry(&[]);
    let ctx = context(&[
        (
            "Dockerfile",
            b"FROM scratch\nCOPY requirements*.txt /app/\nCOPY app.txt /app/\n",
        ),
        ("app.txt", b"app"),
    ]);
    // BuildKit semantics (docker's default builder since 23.0): nothing to copy, no error.
    let names = native_files(ctx.path(), &dest);
    assert!(names.iter().any(|n| n == "app/app.txt"), "{names:?}");
    // The classic builder in this environment refuses it; BuildKit (not installed here)
    // accepts it — that is the behaviour we follow.
    if let Some(d) = docker_build(ctx.path()) {
        let e = d.expect_err("the classic builder refuses an unmatched wildcard");
        assert!(e.contains("no source files were specified"), "{e}");
    }
    let ctx = context(&[("Dockerfile", b"FROM scratch\nCOPY requirements.txt /app/\n")]);
    let line = native_fails(ctx.path());
    assert!(
        line.contains("\"requirements.txt\": no such file"),
        "{line}"
    );
    if let Some(d) = docker_build(ctx.path()) {
        assert!(d.is_err(), "docker refuses a missing literal source");
    }
}

/// `.dockerignore` through globset decides as docker's builder does: `*` stays in its
/// segment, `docs/**` is what is inside docs, `[!x]` is a class holding `!` and `x` (Go
/// negates with `^`), braces are literal, `**` in the middle spans directories, and a `!`
/// exception re-includes a file.
#[test]
fn dockerignore_patterns_decide_like_docker() {
    let ctx = context(&[
        ("Dockerfile", b"FROM scratch\nCOPY . /c/\n"),
        (
            ".dockerignore",
            b"*.log\n!keep.log\ndocs/**\na/*/c\n[!x]y.txt\n{a,b}\nsub/**/tmp\n",
        ),
        ("x.log", b"1"),
        ("keep.log", b"1"),
        ("sub/x.log", b"1"),
        ("docs/a.md", b"1"),
        ("docs/d/b.md", b"1"),
        ("a/b/c", b"1"),
        ("a/b/b/c", b"1"),
        ("!y.txt", b"1"),
        ("xy.txt", b"1"),
        ("zy.txt", b"1"),
        ("{a,b}", b"1"),
        ("sub/tmp", b"1"),
        ("sub/q/tmp/f", b"1"),
        ("sub/keep", b"1"),
    ]);
    let copied = |names: Vec<String>| {
        let mut v: Vec<String> = names
            .into_iter()
            .map(|n| n.trim_start_matches("./").trim_end_matches('/').to_string())
            .filter(|n| n.starts_with("c/"))
            .collect();
        v.sort();
        v.dedup();
        v
    };
    let dest = GantryServer::registry(&[]);
    let native = copied(native_files(ctx.path(), &dest));
    let expected = [
        "c/.dockerignore",
        "c/Dockerfile",
        "c/a",
        "c/a/b",
        "c/a/b/b",
        "c/a/b/b/c",
        "c/docs",
        "c/keep.log",
        "c/sub",
        "c/sub/keep",
        "c/sub/q",
        "c/sub/x.log",
        "c/zy.txt",
    ];
    assert_eq!(native, expected);
    if let Some(d) = docker_build(ctx.path()) {
        let id = d.expect("docker builds it");
        assert_eq!(copied(docker_files(&id)), native, "docker's builder agrees");
    }
}
