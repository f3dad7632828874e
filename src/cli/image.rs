//! `gantry image copy|tag|promote|ls|inspect|delete`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{CliError, Exit};
use crate::client::copy::Progress;
use crate::client::ops::{self, RegistryType, TemporaryTag};
use crate::client::{
    ClientError, ClientOptions, CopyOptions, Credentials, ImageRef, Limits, StoreFactory,
};

#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// Copy an image (or a whole index) between registries and OCI layouts, digest unchanged.
    ///
    /// Example: gantry image copy oci:./out:v1 docker://127.0.0.1:5000/app:change_12_v1
    Copy(CopyArgs),
    /// Give an image a new tag in the same repository (one manifest GET, one PUT).
    ///
    /// Example: gantry image tag 127.0.0.1:5000/app:v1 stable
    Tag(TagArgs),
    /// Retag the tested manifest after merge and delete the temporary tag.
    ///
    /// Example: gantry image promote docker.io/example/app --tag latest --change 12
    Promote(PromoteArgs),
    /// List the tags of a repository.
    ///
    /// Example: gantry image ls 127.0.0.1:5000/app --long
    Ls(LsArgs),
    /// List the repositories of a registry (`/v2/_catalog`).
    ///
    /// Example: gantry image catalog 127.0.0.1:5000
    Catalog(CatalogArgs),
    /// Show an image's manifest, config and platforms.
    ///
    /// Example: gantry image inspect 127.0.0.1:5000/app:v1 --json
    Inspect(InspectArgs),
    /// Delete a tag, or a manifest when given a digest.
    ///
    /// Example: gantry image delete 127.0.0.1:5000/app:old
    Delete(DeleteArgs),
}

/// Options every registry-facing command takes.
#[derive(Args, Debug, Clone)]
pub struct RegistryOpts {
    /// Credentials as user:password (default: ~/.docker/config.json).
    #[arg(long, env = "GANTRY_CREDS", hide_env_values = true)]
    pub creds: Option<String>,
    /// Trust this CA certificate (PEM); repeatable.
    #[arg(long = "ca-cert", value_name = "FILE")]
    pub ca_certs: Vec<PathBuf>,
    /// Allow plain HTTP and unverified TLS to any registry.
    #[arg(long)]
    pub insecure: bool,
    /// Data as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Entries per page asked of the registry when listing tags or repositories.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub page_size: usize,
    /// A transfer moving under 1 KiB in this many seconds is cut off as stalled (curl's
    /// --speed-time). Hidden: the tests that prove the cut-off shorten it.
    #[arg(long, value_name = "SECONDS", default_value_t = 20, hide = true)]
    pub low_speed_time: u64,
}

impl RegistryOpts {
    /// The client's read limits, with `--low-speed-time`.
    pub fn limits(&self) -> Limits {
        Limits {
            low_speed_time: std::time::Duration::from_secs(self.low_speed_time),
            ..Limits::default()
        }
    }

    fn options(&self, creds: Option<&str>) -> Result<ClientOptions, CliError> {
        let credentials = creds
            .or(self.creds.as_deref())
            .map(Credentials::parse)
            .transpose()
            .map_err(usage)?;
        Ok(ClientOptions {
            credentials,
            ca_certs: self.ca_certs.clone(),
            insecure: self.insecure,
            page_size: self.page_size,
            limits: self.limits(),
            ..ClientOptions::default()
        })
    }

    fn factory(&self) -> Result<StoreFactory, CliError> {
        Ok(StoreFactory::new(self.options(None)?))
    }
}

#[derive(Args, Debug)]
pub struct CopyArgs {
    /// Source: docker://host/repo:tag, host/repo@sha256:…, oci:DIR[:tag].
    pub src: String,
    /// Destination (same forms).
    pub dst: String,
    /// Copy every platform of an index (the default for indexes).
    #[arg(long, conflicts_with = "platform")]
    pub all: bool,
    /// Copy every tag of the source repository to the destination repository (both
    /// given without a tag).
    #[arg(long)]
    pub all_tags: bool,
    /// Copy only this platform of an index, e.g. linux/arm64.
    #[arg(long)]
    pub platform: Option<String>,
    /// Blobs in flight at once.
    #[arg(short = 'j', long, default_value_t = 8)]
    pub jobs: usize,
    /// Also copy referrers (signatures, SBOMs) of the image.
    #[arg(long)]
    pub referrers: bool,
    /// Credentials for the source registry only.
    #[arg(long, env = "GANTRY_SRC_CREDS", hide_env_values = true)]
    pub src_creds: Option<String>,
    /// Credentials for the destination registry only.
    #[arg(long, env = "GANTRY_DEST_CREDS", hide_env_values = true)]
    pub dest_creds: Option<String>,
    #[command(flatten)]
    pub reg: RegistryOpts,
}

#[derive(Args, Debug)]
pub struct TagArgs {
    pub src: String,
    pub new_tag: String,
    #[command(flatten)]
    pub reg: RegistryOpts,
}

#[derive(Args, Debug)]
pub struct PromoteArgs {
    /// Repository, e.g. docker.io/example/app.
    pub repo: String,
    /// Final tag(s) to promote to.
    #[arg(long = "tag", required = true)]
    pub tags: Vec<String>,
    /// Temporary tags are change_<N>_<tag>.
    #[arg(long, conflicts_with_all = ["pipeline", "temporary_tag"])]
    pub change: Option<u64>,
    /// Temporary tags are <pipeline>_<tag> (no change).
    #[arg(long, conflicts_with = "temporary_tag")]
    pub pipeline: Option<String>,
    /// An explicit temporary tag (with exactly one --tag).
    #[arg(long)]
    pub temporary_tag: Option<String>,
    /// Registry-specific fallback for deleting tags: oci, dockerhub, quay.
    #[arg(long, default_value = "oci")]
    pub registry_type: String,
    /// Docker Hub API base for --registry-type dockerhub (default https://hub.docker.com).
    #[arg(long, env = "GANTRY_DOCKERHUB_URL", value_name = "URL")]
    pub dockerhub_url: Option<String>,
    /// quay.io OAuth token for --registry-type quay.
    #[arg(long, env = "QUAY_TOKEN", hide_env_values = true)]
    pub quay_token: Option<String>,
    /// Also delete temporary tags older than this (e.g. 24h).
    #[arg(long, value_parser = super::registry::parse_duration)]
    pub sweep_older_than: Option<std::time::Duration>,
    #[command(flatten)]
    pub reg: RegistryOpts,
}

#[derive(Args, Debug)]
pub struct LsArgs {
    pub repo: String,
    /// Show the digest of every tag.
    #[arg(long, short)]
    pub long: bool,
    #[command(flatten)]
    pub reg: RegistryOpts,
}

#[derive(Args, Debug)]
pub struct CatalogArgs {
    /// Registry host[:port].
    pub registry: String,
    #[command(flatten)]
    pub reg: RegistryOpts,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    pub image: String,
    #[command(flatten)]
    pub reg: RegistryOpts,
}

#[derive(Args, Debug)]
pub struct DeleteArgs {
    pub image: String,
    #[command(flatten)]
    pub reg: RegistryOpts,
}

fn usage(e: ClientError) -> CliError {
    CliError {
        status: Exit::Usage,
        error: e.into(),
    }
}

/// Bad input is the user's (2); everything the registry or the network answered —
/// not found, refused credentials, unreachable, untrusted certificate — is a failed
/// operation (1), as the README's table says.
pub(super) fn failed(e: ClientError) -> CliError {
    let status = match e {
        ClientError::Invalid(_) => Exit::Usage,
        _ => Exit::Failure,
    };
    CliError {
        status,
        error: e.into(),
    }
}

fn parse_ref(s: &str) -> Result<ImageRef, CliError> {
    ImageRef::parse(s).map_err(usage)
}

fn print_json<T: serde::Serialize>(v: &T) -> Result<(), CliError> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

pub async fn run(cmd: ImageCommand, quiet: bool) -> Result<Exit, CliError> {
    match cmd {
        ImageCommand::Copy(a) => copy(a, quiet).await,
        ImageCommand::Tag(a) => {
            let src = parse_ref(&a.src)?;
            crate::oci::validate_tag(&a.new_tag)
                .map_err(|e| usage(ClientError::Invalid(e.to_string())))?;
            let store = a.reg.factory()?.store(&src).map_err(failed)?;
            let d = ops::tag(&store, &src.reference(), &a.new_tag)
                .await
                .map_err(failed)?;
            if a.reg.json {
                print_json(&serde_json::json!({"tag": a.new_tag, "digest": d}))?;
            } else {
                println!("{d}");
            }
            Ok(Exit::Success)
        }
        ImageCommand::Promote(a) => promote(a).await,
        ImageCommand::Ls(a) => {
            let r = parse_ref(&a.repo)?;
            let store = a.reg.factory()?.store(&r).map_err(failed)?;
            let tags = ops::list(&store, a.long).await.map_err(failed)?;
            if a.reg.json {
                print_json(&tags)?;
            } else {
                for t in tags {
                    match t.digest {
                        Some(d) => println!("{}\t{d}", t.tag),
                        None => println!("{}", t.tag),
                    }
                }
            }
            Ok(Exit::Success)
        }
        ImageCommand::Catalog(a) => {
            let host = a
                .registry
                .trim_start_matches("docker://")
                .trim_end_matches('/');
            // Validate the host the way references are validated.
            crate::oci::Reference::parse(&format!("{host}/x"))
                .map_err(|e| usage(ClientError::Invalid(e.to_string())))?;
            let client = a.reg.factory()?.client(host).map_err(failed)?;
            let repos = client.catalog().await.map_err(failed)?;
            if a.reg.json {
                print_json(&repos)?;
            } else {
                for r in repos {
                    println!("{r}");
                }
            }
            Ok(Exit::Success)
        }
        ImageCommand::Inspect(a) => {
            let r = parse_ref(&a.image)?;
            let store = a.reg.factory()?.store(&r).map_err(failed)?;
            let i = ops::inspect(&store, &r.reference()).await.map_err(failed)?;
            if a.reg.json {
                print_json(&i)?;
            } else {
                print!("{}", inspect_text(&i));
            }
            Ok(Exit::Success)
        }
        ImageCommand::Delete(a) => {
            let r = parse_ref(&a.image)?;
            let store = a.reg.factory()?.store(&r).map_err(failed)?;
            if store.delete(&r.reference()).await.map_err(failed)? {
                eprintln!("deleted {r}");
                Ok(Exit::Success)
            } else {
                Err(failed(ClientError::NotFound(r.to_string())))
            }
        }
    }
}

async fn copy(a: CopyArgs, quiet: bool) -> Result<Exit, CliError> {
    let src = parse_ref(&a.src)?;
    let dst = parse_ref(&a.dst)?;
    if a.all_tags {
        return copy_all_tags(&a, src, dst, quiet).await;
    }
    let factory = copy_factory(&a, &src, &dst)?;
    let s = factory.store(&src).map_err(failed)?;
    let d = factory.store(&dst).map_err(failed)?;
    let opts = CopyOptions {
        platform: a.platform.clone(),
        jobs: a.jobs,
        referrers: a.referrers,
        progress: Progress::for_stderr(quiet),
    };
    // Copying by digest without a destination tag keeps it untagged (by digest).
    let dst_tag = match (&dst, dst.tag()) {
        (ImageRef::Layout { tag: None, .. }, _) => src.tag().map(String::from),
        (_, t) => t.map(String::from),
    };
    let report = crate::client::copy(&s, &src.reference(), &d, dst_tag.as_deref(), &opts).await;
    if let Progress::Bar(b) = &opts.progress {
        b.finish_and_clear();
    }
    let report = report.map_err(failed)?;
    if a.reg.json {
        print_json(&report)?;
    } else if let Some(dg) = &report.digest {
        println!("{dg}");
        if !quiet {
            eprintln!(
                "copied {} blobs ({} bytes), mounted {}, skipped {}; {} manifests",
                report.blobs_copied,
                report.bytes_copied,
                report.blobs_mounted,
                report.blobs_skipped,
                report.manifests
            );
        }
    }
    Ok(Exit::Success)
}

fn copy_factory(a: &CopyArgs, src: &ImageRef, dst: &ImageRef) -> Result<StoreFactory, CliError> {
    let mut factory = StoreFactory::new(a.reg.options(None)?);
    if let (Some(c), ImageRef::Registry(r)) = (&a.src_creds, src) {
        factory = factory.with_registry_options(&r.registry, a.reg.options(Some(c))?);
    }
    if let (Some(c), ImageRef::Registry(r)) = (&a.dest_creds, dst) {
        factory = factory.with_registry_options(&r.registry, a.reg.options(Some(c))?);
    }
    Ok(factory)
}

/// `copy --all-tags`: every tag of the source repository, one copy each (blobs the
/// destination already has are skipped, so shared layers move once).
async fn copy_all_tags(
    a: &CopyArgs,
    src: ImageRef,
    dst: ImageRef,
    quiet: bool,
) -> Result<Exit, CliError> {
    let explicit = |r: &ImageRef| match r {
        ImageRef::Registry(r) => r.tag.is_some() || r.digest.is_some(),
        ImageRef::Layout { tag, .. } => tag.is_some(),
    };
    if explicit(&src) || explicit(&dst) {
        return Err(usage(ClientError::Invalid(format!(
            "--all-tags copies whole repositories: give {} and {} without a tag or digest",
            a.src, a.dst
        ))));
    }
    let factory = copy_factory(a, &src, &dst)?;
    let s = factory.store(&src).map_err(failed)?;
    let d = factory.store(&dst).map_err(failed)?;
    let tags = s.tags().await.map_err(failed)?;
    let mut reports = Vec::new();
    for tag in &tags {
        let opts = CopyOptions {
            platform: a.platform.clone(),
            jobs: a.jobs,
            referrers: a.referrers,
            progress: Progress::for_stderr(quiet),
        };
        let report = crate::client::copy(&s, tag, &d, Some(tag), &opts).await;
        if let Progress::Bar(b) = &opts.progress {
            b.finish_and_clear();
        }
        let report = report.map_err(failed)?;
        if !a.reg.json
            && let Some(dg) = &report.digest
        {
            println!("{tag}\t{dg}");
        }
        reports.push(serde_json::json!({"tag": tag, "report": report}));
    }
    if a.reg.json {
        print_json(&reports)?;
    } else if !quiet {
        eprintln!("copied {} tags from {} to {}", tags.len(), a.src, a.dst);
    }
    Ok(Exit::Success)
}

/// `image inspect` for people: the image's facts first (created, platform, size,
/// labels, how it runs), then its layers.
fn inspect_text(i: &ops::Inspection) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(o, "Digest:       {}", i.digest);
    let _ = writeln!(o, "MediaType:    {}", i.media_type);
    if !i.platforms.is_empty() {
        let _ = writeln!(o, "Platforms:    {}", i.platforms.join(", "));
    }
    let layers: u64 = i.layers.iter().map(|l| l.size).sum();
    if let Some(c) = &i.config {
        if let Some(t) = c["created"].as_str() {
            let _ = writeln!(o, "Created:      {t}");
        }
        if let (Some(os), Some(arch)) = (c["os"].as_str(), c["architecture"].as_str()) {
            let v = c["variant"]
                .as_str()
                .map(|v| format!("/{v}"))
                .unwrap_or_default();
            let _ = writeln!(o, "Platform:     {os}/{arch}{v}");
        }
    }
    if !i.layers.is_empty() {
        let _ = writeln!(
            o,
            "Size:         {} in {} layers (compressed), manifest {} B",
            human_bytes(layers),
            i.layers.len(),
            i.size
        );
    } else {
        let _ = writeln!(o, "Size:         manifest {} B", i.size);
    }
    if let Some(cfg) = i.config.as_ref().map(|c| &c["config"]) {
        if let Some(labels) = cfg["Labels"].as_object().filter(|l| !l.is_empty()) {
            let _ = writeln!(o, "Labels:");
            for (k, v) in labels {
                let _ = writeln!(o, "  {k}={}", v.as_str().unwrap_or_default());
            }
        }
        for (key, name) in [("Entrypoint", "Entrypoint"), ("Cmd", "Cmd")] {
            if let Some(a) = cfg[key].as_array() {
                let _ = writeln!(
                    o,
                    "{:<14}{}",
                    format!("{name}:"),
                    serde_json::Value::Array(a.clone())
                );
            }
        }
        for (key, name) in [("WorkingDir", "WorkingDir"), ("User", "User")] {
            if let Some(v) = cfg[key].as_str().filter(|v| !v.is_empty()) {
                let _ = writeln!(o, "{:<14}{v}", format!("{name}:"));
            }
        }
        if let Some(ports) = cfg["ExposedPorts"].as_object().filter(|p| !p.is_empty()) {
            let p: Vec<&str> = ports.keys().map(String::as_str).collect();
            let _ = writeln!(o, "ExposedPorts: {}", p.join(", "));
        }
        if let Some(env) = cfg["Env"].as_array().filter(|e| !e.is_empty()) {
            let _ = writeln!(o, "Env:");
            for e in env {
                let _ = writeln!(o, "  {}", e.as_str().unwrap_or_default());
            }
        }
    }
    for l in &i.layers {
        let _ = writeln!(
            o,
            "Layer:        {} {} ({})",
            l.digest,
            l.media_type,
            human_bytes(l.size)
        );
    }
    o
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut unit = "B";
    for u in UNITS {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1} {unit} ({n} B)")
}

async fn promote(a: PromoteArgs) -> Result<Exit, CliError> {
    let r = parse_ref(&a.repo)?;
    let ImageRef::Registry(reference) = &r else {
        return Err(usage(ClientError::Invalid(
            "promote works on a registry repository".into(),
        )));
    };
    if reference.tag.is_some() || reference.digest.is_some() {
        return Err(usage(ClientError::Invalid(format!(
            "{:?}: give the repository without a tag; final tags go in --tag",
            a.repo
        ))));
    }
    for t in &a.tags {
        crate::oci::validate_tag(t).map_err(|e| usage(ClientError::Invalid(e.to_string())))?;
    }
    let temporary = match (a.change, &a.pipeline, &a.temporary_tag) {
        (Some(n), _, _) => TemporaryTag::Change(n),
        (_, Some(p), _) => TemporaryTag::Pipeline(p.clone()),
        (_, _, Some(t)) => TemporaryTag::Explicit(t.clone()),
        _ => {
            return Err(usage(ClientError::Invalid(
                "one of --change, --pipeline or --temporary-tag is required".into(),
            )));
        }
    };
    let registry_type = match a.registry_type.as_str() {
        "oci" => RegistryType::Oci,
        "dockerhub" => match a
            .reg
            .creds
            .as_deref()
            .map(Credentials::parse)
            .transpose()
            .map_err(usage)?
        {
            Some(Credentials::Basic { username, password }) => RegistryType::DockerHub {
                username,
                password,
                api_url: a.dockerhub_url.clone(),
            },
            _ => {
                return Err(usage(ClientError::Invalid(
                    "--registry-type dockerhub needs --creds user:password".into(),
                )));
            }
        },
        "quay" => RegistryType::Quay {
            token: a.quay_token.clone().ok_or_else(|| {
                usage(ClientError::Invalid(
                    "--registry-type quay needs --quay-token or QUAY_TOKEN".into(),
                ))
            })?,
        },
        other => {
            return Err(usage(ClientError::Invalid(format!(
                "unknown --registry-type {other:?} (oci, dockerhub, quay)"
            ))));
        }
    };
    let store = a.reg.factory()?.store(&r).map_err(failed)?;
    let results = ops::promote(&store, &a.tags, &temporary, &registry_type)
        .await
        .map_err(failed)?;
    let mut swept = Vec::new();
    if let Some(age) = a.sweep_older_than {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        swept = ops::sweep(&store, &temporary, age, &registry_type, now)
            .await
            .map_err(failed)?;
    }
    if a.reg.json {
        print_json(&serde_json::json!({"promoted": results, "swept": swept}))?;
    } else {
        for p in &results {
            println!("{}:{} {}", reference.name(), p.tag, p.digest);
            match &p.left_behind {
                None => eprintln!(
                    "promoted {} -> {} and deleted {}",
                    p.temporary_tag, p.tag, p.temporary_tag
                ),
                Some(why) => eprintln!(
                    "promoted {} -> {}; temporary tag left behind: {why}",
                    p.temporary_tag, p.tag
                ),
            }
        }
        for (t, deleted, why) in &swept {
            if *deleted {
                eprintln!("swept old temporary tag {t}");
            } else {
                eprintln!(
                    "could not sweep {t}: {}",
                    why.as_deref().unwrap_or("unknown")
                );
            }
        }
    }
    Ok(Exit::Success)
}
