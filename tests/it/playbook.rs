//! Issue 6, item 4: the playbook interpreter.
//!
//! Fixture playbooks under `tests/fixtures/playbook/playbooks/` mostly check themselves with
//! `assert`; these tests check what only the caller sees: the log, the order of events,
//! returned data and facts, errors with file:line, cancellation and redaction. The seed's
//! reference playbooks (`examples/reference-config/playbooks/`) and the shipped ones
//! (`playbooks/`) are checked and run against a stand-in for the native roles.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use gantry::playbook::{
    self, LogSink, NativeRoles, PlaybookContext, PlaybookError, PlaybookOutcome, RoleCall,
    RoleOutcome, Vars,
};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn project() -> PathBuf {
    repo().join("tests/fixtures/playbook")
}

fn playbook_path(name: &str) -> PathBuf {
    project().join("playbooks").join(name)
}

/// Collects lines; optionally cancels a token when a line contains a marker.
#[derive(Default)]
struct Sink {
    lines: Mutex<Vec<String>>,
    cancel_on: Option<(String, CancellationToken)>,
}

impl LogSink for Sink {
    fn line(&self, line: &str) {
        if let Some((marker, token)) = &self.cancel_on
            && line.contains(marker.as_str())
        {
            token.cancel();
        }
        self.lines.lock().unwrap().push(line.to_string());
    }
}

impl Sink {
    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    fn text(&self) -> String {
        self.lines().join("\n")
    }
}

/// The zuul-jobs role names gantry serves natively (what `roles::ROLES` lists), recording
/// each call; `run-buildset-registry` returns a registry as a fact and as secret data.
struct FakeNative {
    calls: Mutex<Vec<(String, Value)>>,
}

/// The native role set, plus one that fails, for the interpreter's own tests.
const FAILING_NATIVE: &str = "failing-native";

impl FakeNative {
    fn new() -> FakeNative {
        FakeNative {
            calls: Mutex::new(Vec::new()),
        }
    }

    fn names(&self) -> Vec<String> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .map(|(n, _)| n.clone())
            .collect()
    }
}

impl NativeRoles for FakeNative {
    fn has(&self, name: &str) -> bool {
        gantry::roles::ROLES.contains(&name) || name == FAILING_NATIVE
    }

    fn names(&self) -> Vec<String> {
        gantry::roles::ROLES
            .iter()
            .copied()
            .chain([FAILING_NATIVE])
            .map(String::from)
            .collect()
    }

    fn run<'a>(
        &'a self,
        name: &'a str,
        call: RoleCall<'a>,
    ) -> BoxFuture<'a, Result<RoleOutcome, playbook::NativeRoleError>> {
        Box::pin(async move {
            let seen = json!({
                "custom": call.vars.get("custom"),
                "job_var": call.vars.get("job_var"),
            });
            self.calls.lock().unwrap().push((name.to_string(), seen));
            call.log.line(&format!("native {name} ran"));
            match name {
                FAILING_NATIVE => Err(playbook::NativeRoleError::Role(
                    "the native role failed".into(),
                )),
                "run-buildset-registry" => {
                    let registry =
                        json!({"host": "127.0.0.1", "port": 5000, "password": "pw-native-1"});
                    let mut out = RoleOutcome {
                        changed: true,
                        ..RoleOutcome::default()
                    };
                    out.facts
                        .insert("buildset_registry".into(), registry.clone());
                    out.returned
                        .secret_data
                        .insert("buildset_registry".into(), registry);
                    Ok(out)
                }
                "push-to-intermediate-registry" | "build-docker-image" => {
                    let mut out = RoleOutcome::default();
                    out.returned.data.insert(
                        "zuul".into(),
                        json!({"artifacts": [{"name": name, "url": "docker://x/y:z"}]}),
                    );
                    Ok(out)
                }
                _ => Ok(RoleOutcome::default()),
            }
        })
    }
}

struct Run {
    result: Result<PlaybookOutcome, PlaybookError>,
    sink: Sink,
    work: tempfile::TempDir,
    elapsed: Duration,
}

impl Run {
    fn outcome(&self) -> &PlaybookOutcome {
        match &self.result {
            Ok(o) => o,
            Err(e) => panic!("invalid playbook: {e}"),
        }
    }

    /// The run succeeded; the log is shown when it did not.
    fn ok(&self) -> &PlaybookOutcome {
        let o = self.outcome();
        assert!(o.ok, "{:?}\n--- log:\n{}", o.error, self.sink.text());
        o
    }
}

fn job_vars() -> Vars {
    let mut v = Vars::default();
    v.set("job_var", json!("from-job"));
    v.set("p_job", json!("job"));
    v.set("p_play", json!("job"));
    v
}

async fn run_in(
    path: &Path,
    project_dir: &Path,
    vars: Vars,
    native: &dyn NativeRoles,
    sink: Sink,
    cancel: CancellationToken,
) -> Run {
    let work = tempfile::tempdir().unwrap();
    let ctx = PlaybookContext {
        project_dir,
        role_paths: &[],
        work_dir: work.path(),
        vars,
        inventory: &playbook::Inventory::localhost(),
        native,
        log: &sink,
        cancel,
    };
    let t = Instant::now();
    let result = playbook::run_playbook(path, &ctx).await;
    let elapsed = t.elapsed();
    drop(ctx);
    Run {
        result,
        sink,
        work,
        elapsed,
    }
}

async fn run(name: &str) -> Run {
    run_in(
        &playbook_path(name),
        &project(),
        job_vars(),
        &FakeNative::new(),
        Sink::default(),
        CancellationToken::new(),
    )
    .await
}

#[tokio::test]
async fn keywords() {
    let r = run("keywords.yaml").await;
    r.ok();
    let log = r.sink.text();
    assert!(log.contains("PLAY [keywords]"), "{log}");
    assert!(log.contains("TASK [templated name play]"), "{log}");
    assert!(
        log.contains(
            "TASK [when with a boolean]\nlocalhost | skipping: Conditional result was False"
        ),
        "{log}"
    );
    assert!(
        log.contains("localhost | from-play play-env tv"),
        "command output streamed: {log}"
    );
    assert!(
        log.contains("FAILED - RETRYING: until with retries (5 retries left)."),
        "{log}"
    );
    assert!(log.contains("localhost | ...ignoring"), "{log}");
    assert!(log.contains("PLAY RECAP\nlocalhost | ok: "), "{log}");
}

#[tokio::test]
async fn modules() {
    let r = run("modules.yaml").await;
    let o = r.ok();
    let log = r.sink.text();
    assert!(log.contains("localhost | kv gantry"), "debug msg=: {log}");
    assert!(log.contains("\"who\": \"gantry\""), "debug var: {log}");
    assert!(
        log.contains("localhost | all good"),
        "assert success_msg: {log}"
    );
    assert!(log.contains("localhost | FAILED: expected gantry"), "{log}");
    // `cacheable: true`: the fact outlives the playbook (Zuul's fact cache).
    assert_eq!(o.facts["localhost"]["a_fact"], "gantry-fact");
    assert_eq!(
        Value::Object(o.returned.data.clone()),
        json!({
            "zuul": {"artifacts": [
                {"name": "a", "url": "docker://x/a:1"},
                {"name": "b", "url": "docker://x/b:1"},
            ]},
            "k": {"x": 1, "y": 2},
            "from_file": true,
        })
    );
    assert_eq!(o.returned.secret_data["pw"], "s3cret-returned");
    assert!(!log.contains("s3cret-returned"));
    assert_eq!(
        std::fs::read_to_string(r.work.path().join("out/conf.txt")).unwrap(),
        "who=gantry\n"
    );
}

#[tokio::test]
async fn block_rescue_always_order_and_unrescued_failure() {
    let r = run("blocks.yaml").await;
    let o = r.outcome();
    let log = r.sink.text();
    assert!(!o.ok);
    assert_eq!(
        o.error.as_deref(),
        Some("playbooks/blocks.yaml:34: task unrescued: non-zero return code (rc 7); stderr: boom"),
        "{log}"
    );
    let always = log.find("always ran").expect("always runs after a failure");
    assert!(log.find("TASK [unrescued]").unwrap() < always);
    assert!(!log.contains("never"), "{log}");
    assert!(!log.contains("a later play does not run"), "{log}");
    assert!(log.contains("failed: 1 skipped: 1 rescued: 2"), "{log}");
}

#[tokio::test]
async fn loops_and_register() {
    let r = run("loops.yaml").await;
    r.ok();
    let log = r.sink.text();
    assert!(
        log.contains("localhost | changed: Item: a Runtime: "),
        "{log}"
    );
    assert!(log.contains("localhost | ok: Item: x"), "label: {log}");
    assert!(
        log.contains("localhost | skipping: Item: 2 Conditional result was False"),
        "{log}"
    );
    assert!(
        log.contains("localhost | FAILED: Item: 2 non-zero return code (rc 1)"),
        "{log}"
    );
    assert!(
        log.contains("localhost | skipping: No items in the list"),
        "{log}"
    );
    assert_eq!(
        log.matches("included: playbooks/includes/more.yaml")
            .count(),
        2,
        "{log}"
    );
}

#[tokio::test]
async fn roles_include_role_tasks_from_and_precedence() {
    let r = run("roles.yaml").await;
    r.ok();
    let log = r.sink.text();
    assert!(
        log.contains("TASK [greet : copy from the role's files/]"),
        "{log}"
    );
    assert!(log.contains("TASK [precedence : set_fact]"), "{log}");
    assert!(
        log.contains("localhost | included: role precedence"),
        "{log}"
    );
    assert!(
        log.contains("TASK [a skipped include]\nlocalhost | skipping"),
        "{log}"
    );
    assert!(
        log.contains("the project's roles/ensure-docker ran")
            && !log.contains("native ensure-docker ran"),
        "a role the project ships wins over the native one: {log}"
    );
    // The last play's role runs its meta/main.yaml dependency first.
    let last = &log[log.rfind("PLAY [").unwrap()..];
    let dep = last
        .find("TASK [greet : copy from the role's files/]")
        .expect(last);
    assert!(
        dep < last
            .find("TASK [withdeps : the dependency ran first]")
            .expect(last)
    );
}

#[tokio::test]
async fn failing_shell_reports_rc_and_stderr_with_file_line() {
    let r = run("fail-shell.yaml").await;
    let o = r.outcome();
    assert!(!o.ok);
    assert_eq!(
        o.error.as_deref(),
        Some(
            "playbooks/fail-shell.yaml:3: task this fails: non-zero return code (rc 2); stderr: something broke"
        )
    );
    let log = r.sink.text();
    assert!(log.contains("localhost | to-stdout"), "{log}");
    assert!(
        log.contains("localhost | FAILED: non-zero return code (rc 2); stderr: something broke"),
        "{log}"
    );
    assert!(!log.contains("not reached"));
}

#[tokio::test]
async fn unknown_module_is_an_error_with_position_and_suggestion() {
    let r = run("unknown-module.yaml").await;
    let Err(e) = &r.result else {
        panic!("expected an invalid playbook")
    };
    let text = e.to_string();
    assert!(
        text.starts_with(
            "playbooks/unknown-module.yaml:4:7: unknown module \"shel\" (did you mean \"shell\"?); supported modules: shell, command, set_fact, debug, fail, assert, copy, template, file, stat, zuul_return, include_vars, lineinfile, tempfile, slurp, setup, wait_for, uri, package, pip; and block, meta, include_role, import_role, include_tasks, import_tasks"
        ),
        "{text}"
    );
    assert!(r.sink.lines().is_empty(), "nothing runs");
    let errors = playbook::check_playbook(
        &playbook_path("unknown-module.yaml"),
        &project(),
        &FakeNative::new(),
    )
    .unwrap_err();
    assert_eq!(errors.len(), 1);
}

#[test]
fn check_reports_every_problem() {
    let errors = playbook::check_playbook(
        &playbook_path("invalid.yaml"),
        &project(),
        &FakeNative::new(),
    )
    .unwrap_err();
    let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
    let expected = [
        "playbooks/invalid.yaml:2:3: unknown play keyword \"gather_fact\" (did you mean \"gather_facts\"?)",
        "playbooks/invalid.yaml:7:7: unknown task keyword \"whne\" (did you mean \"when\"?)",
        "playbooks/invalid.yaml:8:13: module copy needs parameter dest",
        "playbooks/invalid.yaml:4:7: role \"upload-docker-imag\" not found (did you mean \"upload-docker-image\"?)",
        "playbooks/invalid.yaml:9:7: included task file playbooks/includes/missing.yaml not found",
    ];
    assert_eq!(text.len(), expected.len(), "{text:#?}");
    for (got, want) in text.iter().zip(expected) {
        assert!(
            got.starts_with(want),
            "{got}\n  does not start with\n{want}"
        );
    }
}

#[tokio::test]
async fn cancellation_kills_a_running_shell_task_promptly() {
    let cancel = CancellationToken::new();
    let sink = Sink {
        cancel_on: Some(("localhost | started".into(), cancel.clone())),
        ..Sink::default()
    };
    let r = run_in(
        &playbook_path("cancel.yaml"),
        &project(),
        Vars::default(),
        &FakeNative::new(),
        sink,
        cancel,
    )
    .await;
    let o = r.outcome();
    assert!(!o.ok);
    assert_eq!(
        o.error.as_deref(),
        Some("playbooks/cancel.yaml:3: task long: cancelled")
    );
    assert!(r.elapsed < Duration::from_secs(10), "{:?}", r.elapsed);
    let log = r.sink.text();
    assert!(!log.contains("after"), "{log}");
    // The background `sleep 43` of the shell is gone too (killed with its group).
    let pid: u32 = log
        .lines()
        .find_map(|l| l.strip_prefix("localhost | started "))
        .and_then(|p| p.trim().parse().ok())
        .expect("the task printed its child's pid");
    // SIGKILL is delivered when the process is next scheduled: allow it a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .next();
        if matches!(state, None | Some("Z") | Some("X")) {
            break;
        }
        assert!(Instant::now() < deadline, "sleep still running: {stat}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn secrets_never_reach_the_log() {
    const SECRET: &str = "s3cr3t-Value-42";
    let mut vars = Vars::default();
    vars.set_unsafe(
        "registry_secret",
        json!({"user": "zuul", "password": SECRET}),
    );
    vars.set_unsafe("raw_secret", json!("{{ not_defined_anywhere }}"));
    let r = run_in(
        &playbook_path("secrets.yaml"),
        &project(),
        vars.clone(),
        &FakeNative::new(),
        Sink::default(),
        CancellationToken::new(),
    )
    .await;
    let o = r.outcome();
    let lines = r.sink.lines();
    let log = lines.join("\n");
    // The playbook ran its asserts (the secret reached the commands) and failed at the end.
    assert_eq!(
        o.error.as_deref(),
        Some(
            "playbooks/secrets.yaml:18: task failing with no_log: the output has been hidden due to the fact that 'no_log: true' was specified for this result"
        ),
        "{log}"
    );
    // What the sink received: masked already, and no_log output absent altogether.
    for l in &lines {
        assert!(!l.contains(SECRET), "secret in the log: {l}");
        assert!(
            !l.contains("returned-secret-99"),
            "returned secret in the log: {l}"
        );
    }
    assert!(log.contains("localhost | token=******"), "{log}");
    assert!(log.contains("localhost | now ******"), "{log}");
    assert!(
        !log.contains("hidden="),
        "no_log output is not logged: {log}"
    );
    assert!(!log.contains("err="), "{log}");
    assert!(!log.contains("fail="), "{log}");
    // The runner-side helper masks what a sink would write, multi-line secrets included.
    let redact = playbook::redactor(vars.secret_strings());
    assert_eq!(redact(&format!("x {SECRET} y")), "x ****** y");
    for l in &lines {
        assert_eq!(&redact(l), l, "already masked");
    }
    assert!(!o.error.as_deref().unwrap_or("").contains(SECRET));
}

#[tokio::test]
async fn native_roles_get_vars_and_give_facts_and_returned_data() {
    let native = FakeNative::new();
    let r = run_in(
        &playbook_path("native.yaml"),
        &project(),
        job_vars(),
        &native,
        Sink::default(),
        CancellationToken::new(),
    )
    .await;
    let o = r.outcome();
    let log = r.sink.text();
    assert_eq!(
        native.names(),
        [
            "run-buildset-registry",
            "use-buildset-registry",
            "pull-from-intermediate-registry",
            "failing-native"
        ],
        "{log}"
    );
    let calls = native.calls.lock().unwrap().clone();
    assert_eq!(
        calls[2].1,
        json!({"custom": "param", "job_var": "from-job"})
    );
    assert!(
        !log.contains("native use-buildset-registry ran"),
        "no_log silences a native role: {log}"
    );
    assert_eq!(o.facts["localhost"]["buildset_registry"]["port"], 5000);
    assert_eq!(
        o.returned.secret_data["buildset_registry"]["host"],
        "127.0.0.1"
    );
    assert_eq!(
        o.error.as_deref(),
        Some("playbooks/native.yaml:26: task a failing native role: the native role failed")
    );
    assert!(
        log.contains("TASK [Not again]\nlocalhost | skipping"),
        "{log}"
    );
    assert!(log.contains("TASK [pull-from-intermediate-registry]\nrole pull-from-intermediate-registry: gantry's native implementation (the project ships no role pull-from-intermediate-registry)\nnative pull-from-intermediate-registry ran\nlocalhost | ok"), "{log}");
}

/// Every playbook of the seed's reference configuration and of the shipped library.
fn shipped_playbooks() -> Vec<(PathBuf, PathBuf)> {
    let mut out = Vec::new();
    for (project_dir, dir) in [
        (
            repo().join("examples/reference-config"),
            repo().join("examples/reference-config/playbooks"),
        ),
        (repo(), repo().join("playbooks")),
    ] {
        let mut stack = vec![dir];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                    out.push((project_dir.clone(), p));
                }
            }
        }
    }
    out.sort();
    out
}

#[test]
fn reference_and_shipped_playbooks_check() {
    let all = shipped_playbooks();
    assert!(all.len() >= 13, "{all:?}");
    for (project_dir, p) in &all {
        if let Err(errors) = playbook::check_playbook(p, project_dir, &FakeNative::new()) {
            panic!("{}: {errors:#?}", p.display());
        }
    }
    // Without native roles the same playbooks name the missing role.
    let (project_dir, p) = &all[0];
    let errors = playbook::check_playbook(p, project_dir, &playbook::NoNativeRoles).unwrap_err();
    assert!(errors[0].to_string().contains("not found"), "{errors:?}");
}

#[tokio::test]
async fn reference_playbooks_run_unchanged() {
    let project_dir = repo().join("examples/reference-config");
    let pb = |p: &str| project_dir.join("playbooks").join(p);
    let native = FakeNative::new();
    let go = |path: PathBuf, vars: Vars| {
        let native = &native;
        let project_dir = project_dir.clone();
        async move {
            run_in(
                &path,
                &project_dir,
                vars,
                native,
                Sink::default(),
                CancellationToken::new(),
            )
            .await
        }
    };
    let pre = go(pb("buildset-registry/pre.yaml"), job_vars()).await;
    let pre_outcome = pre.ok();
    assert_eq!(
        native.names(),
        [
            "ensure-docker",
            "run-buildset-registry",
            "use-buildset-registry",
            "pull-from-intermediate-registry"
        ]
    );
    assert!(
        pre_outcome
            .returned
            .secret_data
            .contains_key("buildset_registry")
    );

    // A child job gets the registry as parent secret data: run-buildset-registry is skipped.
    native.calls.lock().unwrap().clear();
    let mut child = job_vars();
    child.set_unsafe(
        "buildset_registry",
        json!({"host": "10.0.0.1", "port": 1, "password": "p-123456"}),
    );
    go(pb("buildset-registry/pre.yaml"), child).await.ok();
    assert_eq!(
        native.names(),
        [
            "ensure-docker",
            "use-buildset-registry",
            "pull-from-intermediate-registry"
        ]
    );

    let run = go(pb("buildset-registry/run.yaml"), job_vars()).await;
    assert_eq!(run.ok().returned.data["zuul"], json!({"pause": true}));

    native.calls.lock().unwrap().clear();
    for p in [
        "buildset-registry/post.yaml",
        "docker-image/run.yaml",
        "docker-image/upload.yaml",
    ] {
        go(pb(p), job_vars()).await.ok();
    }
    assert_eq!(
        native.names(),
        [
            "push-to-intermediate-registry",
            "build-docker-image",
            "upload-docker-image"
        ]
    );
}

#[tokio::test]
async fn handlers_run_once_after_the_section_that_notified_them() {
    let r = run("handlers.yaml").await;
    let o = r.outcome();
    let log = r.sink.text();
    assert_eq!(
        o.error.as_deref(),
        Some(
            "playbooks/handlers.yaml:37: task command: the requested handler \"nonexistent\" was not found in the play's handlers"
        ),
        "{log}"
    );
    assert_eq!(
        log.matches("RUNNING HANDLER [restart thing]").count(),
        1,
        "{log}"
    );
    assert_eq!(log.matches("RUNNING HANDLER [second]").count(), 1, "{log}");
    assert!(
        log.contains("RUNNING HANDLER [withhandlers : role handler]"),
        "{log}"
    );
    // Set without `cacheable`: seen by the playbook (its assert passed), not kept after it.
    assert!(
        o.facts
            .get("localhost")
            .is_none_or(|f| !f.contains_key("role_handled"))
    );
}

#[tokio::test]
async fn import_playbook_runs_the_other_file_and_names_it_in_errors() {
    let r = run("import.yaml").await;
    assert_eq!(
        r.outcome().error.as_deref(),
        Some(
            "playbooks/fail-shell.yaml:3: task this fails: non-zero return code (rc 2); stderr: something broke"
        )
    );
}
