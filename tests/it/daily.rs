//! Issue 15, daily use: version with the commit, completions, man page, a closed stdout,
//! `--listen` forms, `login`/`logout` shared with skopeo, the exit code of every class,
//! readable `image inspect`, `image copy --all-tags`.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::{self, GantryServer, gantry_bin, image, run, run_fail};

fn gantry() -> Command {
    let mut c = Command::new(gantry_bin());
    c.env_remove("GANTRY_CREDS");
    c
}

/// Runs with `input` on stdin; returns (stdout, stderr, exit code).
fn run_stdin(cmd: &mut Command, input: &str) -> (String, String, i32) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code().unwrap_or(-1),
    )
}

/// A registry with an htpasswd user zuul:`pw` holding `demo/app:v1`.
fn registry_with_user(tmp: &Path, pw: &str) -> (GantryServer, String) {
    let htpasswd = tmp.join("htpasswd");
    let (_, err, code) = run_stdin(
        gantry()
            .args(["registry", "htpasswd", "zuul", "--password-stdin", "--file"])
            .arg(&htpasswd),
        &format!("{pw}\n"),
    );
    assert_eq!(code, 0, "{err}");
    let reg = GantryServer::registry(&["--htpasswd", htpasswd.to_str().unwrap()]);
    let layout = tmp.join("oci");
    let digest = image::single_image_layout(&layout, "v1", &[b"layer one".to_vec()]);
    run(gantry().args([
        "image",
        "copy",
        "-q",
        &format!("oci:{}:v1", layout.display()),
        &format!("{}/demo/app:v1", reg.host()),
        "--creds",
        &format!("zuul:{pw}"),
    ]));
    (reg, digest)
}

#[test]
fn version_names_the_commit() {
    let out = run(gantry().arg("version"));
    let long = run(gantry().arg("--version"));
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let want = format!("{} (commit {head})", env!("CARGO_PKG_VERSION"));
    assert_eq!(out.trim(), format!("gantry {want}"));
    assert_eq!(long.trim(), format!("gantry {want}"));
    let v: serde_json::Value =
        serde_json::from_str(&run(gantry().args(["version", "--json"]))).unwrap();
    assert_eq!(v["commit"], head.as_str());
}

#[test]
fn completions_and_man_page() {
    let bash = run(gantry().args(["completions", "bash"]));
    assert!(bash.contains("complete -F _gantry"), "{bash}");
    assert!(bash.contains("promote"));
    let zsh = run(gantry().args(["completions", "zsh"]));
    assert!(zsh.starts_with("#compdef gantry"), "{zsh}");
    let fish = run(gantry().args(["completions", "fish"]));
    assert!(fish.contains("complete -c gantry"), "{fish}");
    let (_, err, code) = run_fail(gantry().args(["completions", "tcsh"]));
    assert_eq!(code, 2, "{err}");

    let man = run(gantry().arg("manpage"));
    assert!(man.contains(".TH gantry 1"), "{man}");
    let dir = tempfile::tempdir().unwrap();
    run(gantry().args(["manpage", "--dir"]).arg(dir.path()));
    assert!(dir.path().join("gantry.1").is_file());
    assert!(dir.path().join("gantry-image-copy.1").is_file());
}

/// Like `gantry … | head -1` with the reader already gone: no panic, exit 0, no noise.
fn with_closed_stdout(cmd: &mut Command) -> (String, i32) {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = cmd.stdout(writer).stderr(Stdio::piped()).output().unwrap();
    (
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code().unwrap_or(-1),
    )
}

#[test]
fn closed_stdout_ends_quietly() {
    let tmp = tempfile::tempdir().unwrap();
    let (reg, _) = registry_with_user(tmp.path(), "pw1");
    for args in [
        vec![
            "image".to_string(),
            "ls".into(),
            format!("{}/demo/app", reg.host()),
            "--creds".into(),
            "zuul:pw1".into(),
        ],
        vec!["version".into()],
        vec!["completions".into(), "bash".into()],
    ] {
        let (err, code) = with_closed_stdout(gantry().args(&args));
        assert_eq!((code, err.as_str()), (0, ""), "gantry {args:?}");
    }
    // And through a real `head -1`.
    let out = run(Command::new("sh").arg("-c").arg(format!(
        "'{}' completions bash | head -1; echo \"status ${{PIPESTATUS:-0}}\"",
        gantry_bin()
    )));
    assert!(!out.contains("panicked"), "{out}");
}

#[test]
fn listen_accepts_port_only_and_localhost() {
    let tmp = tempfile::tempdir().unwrap();
    for (listen, want) in [(":0", "0.0.0.0:"), ("localhost:0", "127.0.0.1:")] {
        let data = tmp.path().join(listen.replace(':', "_"));
        let s = GantryServer::spawn(
            &[
                "registry".into(),
                "serve".into(),
                "--listen".into(),
                listen.into(),
                "--data-dir".into(),
                data.display().to_string(),
            ],
            tmp.path().join(format!("{}.log", listen.replace(':', "_"))),
            data,
        );
        assert!(s.host().starts_with(want), "{listen} -> {}", s.host());
    }
    let (_, err, code) =
        run_fail(gantry().args(["registry", "serve", "--listen", "5000", "--data-dir", "x"]));
    assert_eq!(code, 2);
    assert!(err.contains("HOST:PORT"), "{err}");
}

#[test]
fn login_logout_round_trip_with_skopeo() {
    if !common::have_skopeo() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (reg, digest) = registry_with_user(tmp.path(), "s3cret-pw");
    let cfg_dir = tmp.path().join("docker");
    std::fs::create_dir_all(&cfg_dir).unwrap();
    // Another tool's settings in the file survive.
    std::fs::write(cfg_dir.join("config.json"), r#"{"detachKeys":"ctrl-x"}"#).unwrap();
    let authfile = cfg_dir.join("config.json");
    let skopeo_inspect = || {
        Command::new("skopeo")
            .args(["inspect", "--tls-verify=false", "--authfile"])
            .arg(&authfile)
            .arg(format!("docker://{}/demo/app:v1", reg.host()))
            .env_remove("REGISTRY_AUTH_FILE")
            .output()
            .unwrap()
    };
    assert!(
        !skopeo_inspect().status.success(),
        "anonymous pull must be refused"
    );

    // Refused credentials: exit 1, nothing written.
    let (_, err, code) = run_stdin(
        gantry().env("DOCKER_CONFIG", &cfg_dir).args([
            "login",
            &reg.host(),
            "--username",
            "zuul",
            "--password-stdin",
        ]),
        "wrong\n",
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("authentication"), "{err}");
    assert!(
        !std::fs::read_to_string(&authfile)
            .unwrap()
            .contains("auths")
    );

    let (_, err, code) = run_stdin(
        gantry().env("DOCKER_CONFIG", &cfg_dir).args([
            "login",
            &reg.host(),
            "--username",
            "zuul",
            "--password-stdin",
        ]),
        "s3cret-pw\n",
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(&format!("logged in to {} as zuul", reg.host())),
        "{err}"
    );
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&authfile).unwrap()).unwrap();
    assert_eq!(cfg["detachKeys"], "ctrl-x");
    assert!(cfg["auths"][reg.host()]["auth"].is_string(), "{cfg}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&authfile).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // skopeo reads what gantry wrote; gantry reads it without --creds.
    let out = skopeo_inspect();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["Digest"], digest.as_str());
    let tags = run(gantry().env("DOCKER_CONFIG", &cfg_dir).args([
        "image",
        "ls",
        &format!("{}/demo/app", reg.host()),
    ]));
    assert_eq!(tags, "v1\n");

    let (_, err, code) = run_stdin(
        gantry()
            .env("DOCKER_CONFIG", &cfg_dir)
            .args(["logout", &reg.host()]),
        "",
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        !skopeo_inspect().status.success(),
        "logged out: refused again"
    );
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&authfile).unwrap()).unwrap();
    assert!(cfg["auths"].get(reg.host()).is_none(), "{cfg}");
}

#[test]
fn login_uses_the_credential_helper_the_config_names() {
    let tmp = tempfile::tempdir().unwrap();
    let (reg, _) = registry_with_user(tmp.path(), "helper-pw");
    let bin = tmp.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let store = tmp.path().join("helper-store");
    // docker's helper protocol: `store` reads {"ServerURL","Username","Secret"}, `erase`
    // reads the server URL.
    let helper = bin.join("docker-credential-fake");
    std::fs::write(
        &helper,
        format!("#!/bin/sh\ncat > '{}'.\"$1\"\n", store.display()),
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let cfg_dir = tmp.path().join("docker");
    std::fs::create_dir_all(&cfg_dir).unwrap();
    std::fs::write(
        cfg_dir.join("config.json"),
        format!(r#"{{"credHelpers":{{"{}":"fake"}}}}"#, reg.host()),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let (_, err, code) = run_stdin(
        gantry()
            .env("DOCKER_CONFIG", &cfg_dir)
            .env("PATH", &path)
            .args(["login", &reg.host(), "-u", "zuul", "--password-stdin"]),
        "helper-pw\n",
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("docker-credential-fake"), "{err}");
    let stored: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{}.store", store.display())).unwrap(),
    )
    .unwrap();
    assert_eq!(stored["ServerURL"], reg.host());
    assert_eq!(stored["Username"], "zuul");
    assert_eq!(stored["Secret"], "helper-pw");
    let text = std::fs::read_to_string(cfg_dir.join("config.json")).unwrap();
    assert!(
        !text.contains("helper-pw"),
        "the secret stays with the helper: {text}"
    );
    run(gantry()
        .env("DOCKER_CONFIG", &cfg_dir)
        .env("PATH", &path)
        .args(["logout", &reg.host()]));
    assert_eq!(
        std::fs::read_to_string(format!("{}.erase", store.display())).unwrap(),
        reg.host()
    );
}

/// One test per class of the README's exit-code table.
#[test]
fn exit_code_per_class() {
    let tmp = tempfile::tempdir().unwrap();
    let (reg, _) = registry_with_user(tmp.path(), "pw2");
    let creds = ["--creds", "zuul:pw2"];

    // 0: success.
    run(gantry()
        .args(["image", "ls", &format!("{}/demo/app", reg.host())])
        .args(creds));

    // 1: the operation failed — not found, refused credentials, untrusted certificate.
    let (_, err, code) = run_fail(
        gantry()
            .args(["image", "inspect", &format!("{}/demo/nope:v1", reg.host())])
            .args(creds),
    );
    assert_eq!(code, 1, "not found: {err}");
    let (_, err, code) = run_fail(
        gantry()
            .args(["image", "ls", &format!("{}/demo/app", reg.host())])
            .args(["--creds", "zuul:wrong"]),
    );
    assert_eq!(code, 1, "refused credentials: {err}");
    let tls = GantryServer::registry(&[
        "--tls-self-signed",
        tmp.path().join("tls").to_str().unwrap(),
    ]);
    let (_, err, code) =
        run_fail(gantry().args(["image", "ls", &format!("{}/demo/app", tls.host())]));
    assert_eq!(code, 1, "untrusted certificate: {err}");

    // 2: usage or configuration.
    let (_, err, code) = run_fail(gantry().args(["image", "ls", "Not A Reference!"]));
    assert_eq!(code, 2, "bad reference: {err}");
    let (_, err, code) = run_fail(gantry().args(["image", "copy", "--no-such-flag"]));
    assert_eq!(code, 2, "bad flag: {err}");

    // 3: internal — gantry or its environment broke: a file it must write cannot be
    // written (here a directory stands where the man page goes).
    let out = tmp.path().join("man");
    std::fs::create_dir_all(out.join("gantry.1")).unwrap();
    let (_, err, code) = run_fail(gantry().args(["manpage", "--dir"]).arg(&out));
    assert_eq!(code, 3, "unwritable output: {err}");
}

#[test]
fn inspect_is_readable_and_copy_all_tags() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("oci");
    image::single_image_layout(&layout, "v1", &[vec![7u8; 3000]]);
    let out = run(gantry().args(["image", "inspect", &format!("oci:{}:v1", layout.display())]));
    assert!(out.contains("Created:      2026-01-01T00:00:00Z"), "{out}");
    assert!(out.contains("Platform:     linux/amd64"), "{out}");
    assert!(
        out.contains("Size:         2.9 KiB (3000 B) in 1 layers"),
        "{out}"
    );
    assert!(out.contains("Cmd:          [\"/bin/sh\"]"), "{out}");
    assert!(out.contains("  PATH=/bin"), "{out}");

    // Labels, through an image built with them.
    let ctx = tmp.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nLABEL org.example.team=infra\n",
    )
    .unwrap();
    let reg = GantryServer::registry(&[]);
    let tag = format!("{}/demo/labelled:v1", reg.host());
    run(gantry().args([
        "build",
        ctx.to_str().unwrap(),
        "--builder",
        "native",
        "--tag",
        &tag,
    ]));
    run(gantry().args(["image", "tag", &tag, "v2"]));
    let out = run(gantry().args(["image", "inspect", &tag]));
    assert!(out.contains("Labels:\n  org.example.team=infra\n"), "{out}");

    // --all-tags: every tag of the repository, digests unchanged.
    let dst = format!("{}/mirror/labelled", reg.host());
    let out = run(gantry().args([
        "image",
        "copy",
        "--all-tags",
        &format!("{}/demo/labelled", reg.host()),
        &dst,
    ]));
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].starts_with("v1\tsha256:") && lines[1].starts_with("v2\tsha256:"));
    let listed = run(gantry().args(["image", "ls", "--long", &dst]));
    let mut listed: Vec<&str> = listed.lines().collect();
    listed.sort();
    assert_eq!(listed, lines);
    let (_, err, code) = run_fail(gantry().args(["image", "copy", "--all-tags", &tag, &dst]));
    assert_eq!(code, 2);
    assert!(err.contains("without a tag"), "{err}");
}

/// `cargo install` puts the binary alone in ~/.cargo/bin: copied anywhere, it still has
/// its job library (compiled in, written once to the cache).
#[test]
fn the_binary_alone_works_anywhere() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("bin/gantry");
    std::fs::create_dir_all(bin.parent().unwrap()).unwrap();
    std::fs::copy(gantry_bin(), &bin).unwrap();
    let cache = tmp.path().join("cache");
    let project = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/seed/base");
    let out = run(Command::new(&bin)
        .env("XDG_CACHE_HOME", &cache)
        .current_dir(tmp.path())
        .args([
            "job",
            "show",
            "gantry-build-container-image",
            "--pipeline",
            "check",
        ])
        .arg(&project));
    assert!(out.contains("playbooks/container-image/run.yaml"), "{out}");
    let lib: Vec<_> = std::fs::read_dir(cache.join("gantry"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(lib.len(), 1, "{lib:?}");
    assert!(lib[0].starts_with("library-"), "{lib:?}");
}

/// On a terminal (a pseudo-terminal from `script`), `image copy` draws a byte bar; piped,
/// it prints one line per blob; with -q nothing.
#[test]
fn copy_progress_bar_on_a_terminal_lines_otherwise() {
    if !common::require_tool("script", &["--version"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("oci");
    image::single_image_layout(&layout, "v1", &[common::random_bytes(24 << 20, 15)]);
    let reg = GantryServer::registry(&[]);
    let src = format!("oci:{}:v1", layout.display());
    let copy = |dst: &str, quiet: bool| {
        format!(
            "'{}' image copy{} '{src}' '{}/{dst}'",
            gantry_bin(),
            if quiet { " -q" } else { "" },
            reg.host()
        )
    };
    // The terminal: everything the pty showed, escape sequences included.
    let shown = run(Command::new("script")
        .args(["-qfec", &copy("tty/app:v1", false), "/dev/null"])
        .env("TERM", "xterm"));
    assert!(shown.contains("MiB"), "a byte bar: {shown:?}");
    assert!(
        shown.contains("\u{1b}["),
        "drawn with escape sequences: {shown:?}"
    );
    // Not a terminal: plain lines, one per blob.
    let out = gantry()
        .args([
            "image",
            "copy",
            &src,
            &format!("{}/pipe/app:v1", reg.host()),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains('\u{1b}'), "{err:?}");
    assert_eq!(
        err.lines()
            .filter(|l| l.starts_with("blob sha256:"))
            .count(),
        2,
        "{err}"
    );
    // -q: nothing.
    let shown = run(Command::new("script")
        .args(["-qfec", &copy("quiet/app:v1", true), "/dev/null"])
        .env("TERM", "xterm"));
    assert!(
        shown.trim().starts_with("sha256:") && !shown.contains('\u{1b}'),
        "{shown:?}"
    );
}
