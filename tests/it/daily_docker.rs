//! Issue 15, the docker builder's manners: its output reaches the console and
//! job-output.txt (a failing `RUN` shows why), speculative `FROM` images never retag the
//! user's own images, and nothing gantry tagged stays in the engine.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{self, GantryServer, gantry_bin, image, run, run_fail};

/// Every image reference in the engine (tags and digests) mentioning `needle`.
fn engine_refs(needle: &str) -> Vec<String> {
    let out = run(Command::new("docker").args([
        "images",
        "--digests",
        "--format",
        "{{.Repository}}:{{.Tag}}@{{.Digest}}",
    ]));
    out.lines()
        .filter(|l| l.contains(needle))
        .map(String::from)
        .collect()
}

fn image_id(name: &str) -> String {
    run(Command::new("docker").args(["image", "inspect", "--format", "{{.Id}}", name]))
        .trim()
        .to_string()
}

/// Removes the listed engine references when the test ends.
struct Cleanup(Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for i in &self.0 {
            let _ = Command::new("docker").args(["rmi", "-f", i]).output();
        }
    }
}

/// `docker import` of busybox with `ENV FLAVOUR=<flavour>` as `name`.
fn busybox_image(rootfs: &Path, flavour: &str, name: &str) {
    run(Command::new("docker")
        .arg("import")
        .args(["--change", &format!("ENV FLAVOUR={flavour}")])
        .arg(rootfs)
        .arg(name));
}

#[test]
fn docker_builder_streams_output_keeps_users_images_and_cleans_up() {
    if !common::have_docker() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = tmp.path().join("rootfs.tar");
    assert!(
        image::busybox_rootfs_tar(&rootfs),
        "busybox-static is needed"
    );
    let buildset = GantryServer::registry(&[]);
    let dest = GantryServer::registry(&[]);
    let name = format!("gantry-daily-{}.example/base:1", std::process::id());
    let mut cleanup = Cleanup(vec![name.clone()]);

    // The speculative base lives only in the buildset registry …
    let staging = format!("gantry-daily-staging:{}", uuid::Uuid::new_v4());
    let remote = format!("{}/{name}", buildset.host());
    busybox_image(&rootfs, "speculative", &staging);
    run(Command::new("docker").args(["tag", &staging, &remote]));
    run(Command::new("docker").args(["push", &remote]));
    run(Command::new("docker").args(["rmi", &staging, &remote]));
    // … while the user has an image of their own under the Dockerfile's name.
    busybox_image(&rootfs, "users-own", &name);
    let users_id = image_id(&name);

    let ctx = tmp.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    let tag = format!("{}/daily/app:change_5_latest", dest.host());
    cleanup.0.push(tag.clone());
    let build = |dockerfile: &str| {
        std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
        let mut c = Command::new(gantry_bin());
        c.arg("build")
            .arg(&ctx)
            .args(["--builder", "docker", "--tag", &tag])
            .args(["--buildset-registry", &buildset.host()]);
        c
    };

    // A failing RUN: its output is on the console (default level), the exit code is 1.
    let (_, err, code) = run_fail(&mut build(&format!(
        "FROM {name}\nRUN echo \"flavour $FLAVOUR\"; echo 'about to fail'; exit 3\n"
    )));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("flavour speculative"), "{err}");
    assert!(err.contains("about to fail"), "{err}");
    assert!(err.contains("returned a non-zero code: 3"), "{err}");

    // A good build is pushed; the user's image was neither used nor retagged.
    let out = run(&mut build(&format!(
        "FROM {name}\nRUN echo \"flavour $FLAVOUR\" > /flavour\nCMD [\"cat\", \"/flavour\"]\n"
    )));
    assert!(out.starts_with(&format!("{tag}@sha256:")), "{out}");
    assert_eq!(image_id(&name), users_id, "the user's {name} was retagged");
    assert!(
        engine_refs(&buildset.host()).is_empty() && engine_refs(&dest.host()).is_empty(),
        "left in the engine: {:?} {:?}",
        engine_refs(&buildset.host()),
        engine_refs(&dest.host())
    );
    run(Command::new("docker").args(["pull", &tag]));
    let said = run(Command::new("docker").args(["run", "--rm", &tag]));
    assert_eq!(said, "flavour speculative\n");
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn docker_build_output_is_in_job_output_and_no_tags_are_left() {
    if !common::have_docker() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let publication = GantryServer::registry(&[]);
    let out = Command::new(gantry_bin())
        .env("DOCKER_CONFIG", "/nonexistent-gantry-test")
        .env("GANTRY_BUILDER", "docker")
        .arg("run")
        .arg(repo().join("examples/seed/base"))
        .args(["--pipeline", "check", "--change", "1", "--state-dir"])
        .arg(&state)
        .arg("--jobs-dir")
        .arg(repo().join("jobs"))
        .args(["--publish-to", &format!("docker.io={}", publication.host())])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log_path = stdout
        .lines()
        .find_map(|l| l.split_whitespace().find(|w| w.ends_with("job-output.txt")))
        .unwrap_or_else(|| panic!("no log path in {stdout}"));
    let log = std::fs::read_to_string(log_path).unwrap();
    assert!(log.contains("Step 1/"), "the engine's build output: {log}");
    assert!(log.contains("COPY rootfs/ /"), "{log}");
    let buildset = log
        .split("serving on https://")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no buildset registry in {log}"));
    assert!(
        engine_refs(buildset).is_empty(),
        "temporary tags left in the engine: {:?}",
        engine_refs(buildset)
    );
}
