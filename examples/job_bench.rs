//! Times the job module on a generated configuration (used by `bench/graph.sh`).
//!
//! `cargo run --release --example job_bench -- DIR` writes DIR/zuul.d/ if it is missing:
//! 10,000 jobs in three levels of inheritance (100 roots, 900 middles, 9,000 leaves),
//! 20,000 dependency edges, all in the check pipeline; then it times loading, freezing and
//! graph building, and `provides`/`requires` resolution for every job over a queue of 50
//! changes ahead. Figures go to stdout.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use gantry::job::{
    self, Artifact, BuildRecord, BuildResult, JobGraph, LoadOptions, QueueChange, Requirements,
};

const ROOTS: usize = 100;
const MIDDLES: usize = 900;
const JOBS: usize = 10_000;
const CHANGES: usize = 50;

fn name(i: usize) -> String {
    if i < ROOTS {
        format!("root-{i:05}")
    } else if i < ROOTS + MIDDLES {
        format!("middle-{i:05}")
    } else {
        format!("leaf-{i:05}")
    }
}

/// Every job but the first two depends on the job before it and on one half-way back:
/// 2 × 9,998 + 1 = 19,997 edges, plus 3 more from the last jobs = 20,000.
fn dependencies(i: usize) -> Vec<usize> {
    match i {
        0 => vec![],
        1 => vec![0],
        _ if i >= JOBS - 3 => vec![i - 1, i / 2, i / 3],
        _ => vec![i - 1, i / 2],
    }
}

fn generate(dir: &Path) -> std::io::Result<usize> {
    let d = dir.join("zuul.d");
    std::fs::create_dir_all(&d)?;
    let mut edges = 0;
    // Ten files of 1,000 jobs, like a large zuul.d/.
    for file in 0..10 {
        let mut out = String::new();
        for i in file * 1000..(file + 1) * 1000 {
            let _ = writeln!(out, "- job:\n    name: {}", name(i));
            if i < ROOTS {
                let _ = writeln!(
                    out,
                    "    pre-run: playbooks/pre.yaml\n    run: playbooks/run.yaml\n    post-run: playbooks/post.yaml\n    vars:\n      root: {i}\n      image: {{repository: org/r{i}, tags: [latest]}}"
                );
            } else if i < ROOTS + MIDDLES {
                let _ = writeln!(
                    out,
                    "    parent: {}\n    pre-run: playbooks/middle-pre.yaml\n    provides: [artifact-{}]\n    vars:\n      image: {{repository: org/m{i}}}",
                    name(i % ROOTS),
                    i % 10
                );
            } else {
                let _ = writeln!(
                    out,
                    "    parent: {}\n    run: playbooks/leaf.yaml\n    requires: [artifact-{}]\n    vars: {{leaf: {i}}}",
                    name(ROOTS + i % MIDDLES),
                    i % 10
                );
            }
            let deps = dependencies(i);
            edges += deps.len();
            if !deps.is_empty() {
                let names: Vec<String> = deps.iter().map(|d| name(*d)).collect();
                let _ = writeln!(out, "    dependencies: [{}]", names.join(", "));
            }
        }
        if file == 9 {
            out.push_str("- project:\n    check:\n      jobs:\n");
            for i in 0..JOBS {
                let _ = writeln!(out, "        - {}", name(i));
            }
        }
        std::fs::write(d.join(format!("jobs-{file:02}.yaml")), out)?;
    }
    Ok(edges)
}

fn queue() -> Vec<QueueChange> {
    (0..CHANGES)
        .map(|c| QueueChange {
            project: "org/app".into(),
            change: Some((1000 + c).to_string()),
            patchset: Some("1".into()),
            builds: (0..20)
                .map(|b| BuildRecord {
                    job: name(ROOTS + b),
                    uuid: format!("{c:04}{b:04}"),
                    result: Some(BuildResult::Success),
                    paused: false,
                    artifacts: (0..2)
                        .map(|a| Artifact {
                            name: format!("org/m{b}:{a}"),
                            url: format!("docker://intermediate:5000/org/m{b}:{c}_{a}"),
                            metadata: Some(serde_json::json!({"type": "container_image"})),
                        })
                        .collect(),
                    project: "org/app".into(),
                    change: Some((1000 + c).to_string()),
                    patchset: Some("1".into()),
                    pipeline: "check".into(),
                    provides: vec![format!("artifact-{}", (ROOTS + b) % 10)],
                })
                .collect(),
        })
        .collect()
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn main() {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: job_bench DIR");
        std::process::exit(2);
    };
    let dir = Path::new(&dir);
    if !dir.join("zuul.d").exists() {
        match generate(dir) {
            Ok(edges) => println!(
                "generated {JOBS} jobs, {edges} dependency edges in {}",
                dir.display()
            ),
            Err(e) => {
                eprintln!("error: generating: {e}");
                std::process::exit(3);
            }
        }
    }
    let t = Instant::now();
    let config = match job::load(dir, &LoadOptions::default()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let load = ms(t);
    let project = config.project_name.clone();
    let t = Instant::now();
    let graph = match JobGraph::build(&config, &project, "check") {
        Ok(g) => g,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let build = ms(t);
    let edges: usize = graph
        .jobs()
        .map(|j| graph.dependencies(&j.name).len())
        .sum();
    let t = Instant::now();
    let ready = graph.ready(&Default::default()).len();
    let ready_ms = ms(t);
    // The other extreme: everything but the last job succeeded.
    let last = name(JOBS - 1);
    let states: std::collections::HashMap<String, job::BuildState> = graph
        .jobs()
        .filter(|j| j.name != last)
        .map(|j| {
            (
                j.name.clone(),
                job::BuildState::Completed(BuildResult::Success),
            )
        })
        .collect();
    let t = Instant::now();
    let ready_last = graph.ready(&states);
    let ready_full_ms = ms(t);
    assert_eq!(ready_last, [last.as_str()]);

    let ahead = queue();
    let t = Instant::now();
    let mut artifacts = 0;
    let mut resolved = 0;
    for job in graph.jobs() {
        if let Requirements::Run { artifacts: a } = job::resolve_requirements(job, "check", &ahead)
        {
            artifacts += a.len();
            resolved += 1;
        }
    }
    let queue_ms = ms(t);
    println!(
        "jobs: {}, edges: {edges}, ready at start: {ready}",
        graph.len()
    );
    println!(
        "load (parse + check {} files): {load:.1} ms",
        config.files.len()
    );
    println!("freeze + graph: {build:.1} ms");
    println!("load + freeze + graph: {:.1} ms", load + build);
    println!(
        "ready(): {ready_ms:.1} ms with nothing started, {ready_full_ms:.1} ms with 9,999 jobs done"
    );
    println!(
        "provides/requires for {resolved} jobs over {CHANGES} changes ahead ({artifacts} artifacts handed out): {queue_ms:.1} ms ({:.1} µs per job)",
        queue_ms * 1e3 / resolved.max(1) as f64
    );
}
