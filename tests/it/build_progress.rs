//! The native builder's uploads show progress as `image copy` does (issue 15 item 2): a
//! byte bar on a terminal (a pseudo-terminal from `script`), one line per blob when stderr
//! is not a terminal, nothing with `-q`.

use std::process::Command;

use crate::common::{self, GantryServer, run};

fn gantry() -> Command {
    let mut c = Command::new(common::gantry_bin());
    c.env("DOCKER_CONFIG", "/nonexistent-gantry-test")
        .env_remove("SOURCE_DATE_EPOCH");
    c
}

#[test]
fn build_push_progress_bar_on_a_terminal_lines_otherwise() {
    if !common::require_tool("script", &["--version"]) {
        return;
    }
    let ctx = tempfile::tempdir().unwrap();
    // Random bytes: the gzip'd layer stays ~8 MiB, enough for the bar to show MiB.
    std::fs::write(
        ctx.path().join("big.bin"),
        common::random_bytes(8 << 20, 21),
    )
    .unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM scratch\nCOPY big.bin /big.bin\nLABEL x=y\n",
    )
    .unwrap();
    let reg = GantryServer::registry(&[]);
    let build = |repo: &str, quiet: bool| {
        format!(
            "'{}' build{} --builder native --tag '{}/{repo}:v1' '{}'",
            common::gantry_bin(),
            if quiet { " -q" } else { "" },
            reg.host(),
            ctx.path().display()
        )
    };
    // The terminal: everything the pty showed, escape sequences included.
    let shown = run(Command::new("script")
        .args(["-qfec", &build("tty/app", false), "/dev/null"])
        .env("TERM", "xterm")
        .env("DOCKER_CONFIG", "/nonexistent-gantry-test"));
    assert!(shown.contains("MiB"), "a byte bar: {shown:?}");
    assert!(shown.contains("pushing"), "{shown:?}");
    assert!(
        shown.contains("\u{1b}["),
        "drawn with escape sequences: {shown:?}"
    );
    // Not a terminal: plain lines, one per blob (config and layer), then the tag.
    let piped = || {
        let out = gantry()
            .args(["build", "--builder", "native", "--tag"])
            .arg(format!("{}/pipe/app:v1", reg.host()))
            .arg(ctx.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = piped();
    assert!(!err.contains('\u{1b}'), "{err:?}");
    let blobs: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("blob sha256:"))
        .collect();
    assert_eq!(blobs.len(), 2, "{err}");
    assert!(
        blobs.iter().any(|l| l.ends_with("pushed (8.0 MiB)")),
        "{err}"
    );
    assert!(err.lines().any(|l| l.starts_with("pushed ")), "{err}");
    // The same destination again: the blobs are there, and each line says so.
    let err = piped();
    assert_eq!(
        err.lines()
            .filter(|l| l.starts_with("blob sha256:") && l.ends_with("exists, skipped"))
            .count(),
        2,
        "{err}"
    );
    // -q: nothing but the result.
    let shown = run(Command::new("script")
        .args(["-qfec", &build("quiet/app", true), "/dev/null"])
        .env("TERM", "xterm")
        .env("DOCKER_CONFIG", "/nonexistent-gantry-test"));
    assert!(
        shown.trim().contains("@sha256:") && !shown.contains('\u{1b}'),
        "{shown:?}"
    );
    assert!(!shown.contains("blob sha256:"), "{shown:?}");
}
