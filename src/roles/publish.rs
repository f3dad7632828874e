//! Build, upload, promote and tag removal (ZUUL.md §9).
//!
//! - build-{docker,container}-image: through `build` (the Docker engine when there is
//!   one, the daemonless builder otherwise), tagged `<repository>:<tag>` and, with a
//!   change, `<repository>:change_<N>_<tag>`, pushed into the buildset registry.
//! - upload-{docker,container}-image: copy from the buildset registry to the publication
//!   registry under the temporary tag `change_<N>_<tag>` (`<pipeline>_<tag>` without a
//!   change), after checking the credentials' `repository` regex.
//! - promote-{docker,container}-image: retag the uploaded manifest (GET, PUT, DELETE).
//! - remove-registry-tag: delete `remove_registry_tag_tag` from
//!   `remove_registry_tag_repository`.

use super::RoleError;
use serde_json::Value;

use super::images::{buildset_repository, images, list_var};
use super::{Endpoint, RoleEnv, buildset_endpoint};
use crate::client::ops::{self, RegistryType, TemporaryTag};
use crate::client::{Credentials, ImageRef, StoreFactory};
use crate::oci::Reference;
use crate::playbook::{RoleCall, RoleOutcome};

/// The temporary tag kind for this build: by change, else by pipeline.
fn temporary(call: &RoleCall<'_>) -> Result<TemporaryTag, RoleError> {
    if let Some(c) = super::zuul_str(call, "change")
        && let Ok(n) = c.parse::<u64>()
    {
        return Ok(TemporaryTag::Change(n));
    }
    super::zuul_str(call, "pipeline")
        .map(TemporaryTag::Pipeline)
        .ok_or_else(|| RoleError::Var("neither zuul.change nor zuul.pipeline is set".into()))
}

/// Credentials for `repository` from `docker_credentials` (docker roles) or
/// `container_registry_credentials[<registry>]` (container roles), with the `repository`
/// regex check zuul-jobs makes.
fn credentials(
    call: &RoleCall<'_>,
    role: &str,
    repository: &str,
    registry: &str,
) -> Result<Option<Credentials>, RoleError> {
    let entry = if role.contains("container") {
        super::var(call, "container_registry_credentials")?.and_then(|v| v.get(registry).cloned())
    } else {
        super::var(call, "docker_credentials")?
    };
    let Some(entry) = entry else {
        return Ok(None);
    };
    if let Some(re) = entry.get("repository").and_then(Value::as_str) {
        let ok = regex::Regex::new(&format!("^(?:{re})"))
            .map_err(|e| RoleError::Var(format!("credentials repository regex {re:?}: {e}")))?
            .is_match(repository);
        if !ok {
            return Err(RoleError::Var(format!(
                "{repository} not permitted by {re}"
            )));
        }
    }
    let user = entry
        .get("username")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let pass = entry
        .get("password")
        .and_then(Value::as_str)
        .unwrap_or_default();
    Ok(Some(Credentials::Basic {
        username: user.to_string(),
        password: pass.to_string(),
    }))
}

/// Where an image is published: its registry, or the stand-in `gantry run` was given for
/// it (`--publish-to docker.io=127.0.0.1:5000`), with credentials.
fn publication(
    env: &RoleEnv,
    call: &RoleCall<'_>,
    role: &str,
    repository: &str,
) -> Result<(Endpoint, String), RoleError> {
    let r = Reference::parse(repository)
        .map_err(RoleError::during(format!("repository {repository:?}")))?;
    let creds = credentials(call, role, repository, &r.registry)?;
    let (host, mut options) = match env.publish_to.get(&r.registry) {
        Some(e) => (e.host.clone(), e.options.clone()),
        None => (r.registry.clone(), env.publication.clone()),
    };
    if creds.is_some() {
        options.credentials = creds;
    }
    Ok((Endpoint { host, options }, r.repository))
}

/// The builder a build role uses: `gantry_builder` (`native`, `docker`, `auto`), else the
/// run's choice ([`RoleEnv::builder`]), else auto (docker when an engine answers).
fn builder_kind(
    env: &RoleEnv,
    call: &RoleCall<'_>,
) -> Result<Option<crate::build::BuilderKind>, RoleError> {
    let choice = match super::var(call, "gantry_builder")? {
        Some(Value::String(s)) => s,
        _ => return Ok(env.builder),
    };
    match choice.as_str() {
        "" | "auto" => Ok(None),
        "native" => Ok(Some(crate::build::BuilderKind::Native)),
        "docker" => Ok(Some(crate::build::BuilderKind::Docker)),
        other => Err(RoleError::Var(format!(
            "gantry_builder {other:?}: expected native, docker or auto"
        ))),
    }
}

pub async fn build(
    env: &RoleEnv,
    call: &RoleCall<'_>,
    role: &str,
) -> Result<RoleOutcome, RoleError> {
    let buildset = buildset_endpoint(call)?.ok_or_else(|| RoleError::Var(format!(
        "{role}: no buildset registry to push to (run-buildset-registry first, e.g. with the gantry-build-container-image job)"
    )))?;
    let src_dir = call
        .vars
        .get("zuul")
        .and_then(|z| z.pointer("/project/src_dir"))
        .and_then(Value::as_str)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| call.work_dir.to_path_buf());
    let change = super::zuul_str(call, "change");
    let change_url = super::zuul_str(call, "change_url");
    let kind = builder_kind(env, call)?;
    let epoch = crate::build::source_date_epoch()?;
    for image in images(call, list_var(role))? {
        let mut context = src_dir.join(&image.context);
        if let Some(p) = &image.path {
            context = context.join(p);
        }
        let repo = buildset_repository(&image.repository)?;
        let mut tags = Vec::new();
        for t in &image.tags {
            tags.push(ImageRef::parse(&format!(
                "docker://{}/{repo}:{t}",
                buildset.host
            ))?);
            if let Some(c) = &change {
                tags.push(ImageRef::parse(&format!(
                    "docker://{}/{repo}:change_{c}_{t}",
                    buildset.host
                ))?);
            }
        }
        let build_args = image
            .build_args
            .iter()
            .map(|a| match a.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (a.clone(), String::new()),
            })
            .collect();
        if !image.siblings.is_empty() {
            call.log.line(&format!(
                "{role}: siblings {:?} are not checked out by gantry run; ignored",
                image.siblings
            ));
        }
        let req = crate::build::BuildRequest {
            context: context.clone(),
            dockerfile: image.dockerfile.as_ref().map(|d| context.join(d)),
            tags,
            target: image.target.clone(),
            build_args,
            labels: image.labels.clone(),
            platform: None,
            buildset: Some(crate::build::BuildsetRegistry {
                host: buildset.host.clone(),
                options: buildset.options.clone(),
            }),
            siblings: Vec::new(),
            registry: crate::client::ClientOptions::default(),
            source_date_epoch: epoch,
            output: None,
            progress: crate::client::copy::Progress::Quiet,
        }
        .with_change(change.as_deref(), change_url.as_deref());
        call.log.line(&format!(
            "{role}: building {} from {}",
            image.repository,
            context.display()
        ));
        // The build's output (RUN steps) goes into job-output.txt as it happens.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let req = crate::build::BuildRequest {
            output: Some(tx),
            ..req
        };
        let build = crate::build::build(kind, &req);
        tokio::pin!(build);
        let result = loop {
            tokio::select! {
                r = &mut build => break r,
                Some(line) = rx.recv() => call.log.line(&line),
            }
        };
        while let Ok(line) = rx.try_recv() {
            call.log.line(&line);
        }
        let result = result.map_err(RoleError::during(format!("{role}: {}", image.repository)))?;
        for p in &result.images {
            call.log.line(&format!(
                "{role}: {} {} ({} builder)",
                p.reference, p.digest, result.builder
            ));
        }
        for s in &result.speculative {
            call.log.line(&format!(
                "{role}: used speculative base image {s} from the buildset registry"
            ));
        }
    }
    Ok(RoleOutcome {
        changed: true,
        ..RoleOutcome::default()
    })
}

pub async fn upload(
    env: &RoleEnv,
    call: &RoleCall<'_>,
    role: &str,
) -> Result<RoleOutcome, RoleError> {
    let buildset = buildset_endpoint(call)?.ok_or_else(|| {
        RoleError::Var(format!(
            "{role} needs the buildset registry (buildset_registry) holding the built images"
        ))
    })?;
    let temp = temporary(call)?;
    for image in images(call, list_var(role))? {
        let (dst, path) = publication(env, call, role, &image.repository)?;
        for tag in &image.tags {
            let src = ImageRef::parse(&format!(
                "docker://{}/{}:{tag}",
                buildset.host,
                buildset_repository(&image.repository)?
            ))?;
            let dst_ref = ImageRef::parse(&format!(
                "docker://{}/{path}:{}",
                dst.host,
                temp.for_tag(tag)
            ))?;
            let digest = super::intermediate::copy(&buildset, &src, &dst, &dst_ref).await?;
            call.log
                .line(&format!("{role}: {src} -> {dst_ref} ({digest})"));
        }
    }
    Ok(RoleOutcome {
        changed: true,
        ..RoleOutcome::default()
    })
}

fn store_for(dst: &Endpoint, path: &str) -> Result<crate::client::Store, RoleError> {
    let r = ImageRef::parse(&format!("docker://{}/{path}", dst.host))?;
    StoreFactory::new(dst.options.clone())
        .store(&r)
        .map_err(RoleError::from)
}

pub async fn promote(
    env: &RoleEnv,
    call: &RoleCall<'_>,
    role: &str,
) -> Result<RoleOutcome, RoleError> {
    let temp = temporary(call)?;
    for image in images(call, list_var(role))? {
        let (dst, path) = publication(env, call, role, &image.repository)?;
        let store = store_for(&dst, &path)?;
        let registry_type = match (&dst.options.credentials, dst.host.as_str()) {
            (Some(Credentials::Basic { username, password }), crate::oci::DOCKER_HUB) => {
                RegistryType::DockerHub {
                    username: username.clone(),
                    password: password.clone(),
                    api_url: None,
                }
            }
            _ => RegistryType::Oci,
        };
        let promoted = ops::promote(&store, &image.tags, &temp, &registry_type)
            .await
            .map_err(RoleError::during(format!("{role}: {}", image.repository)))?;
        for p in promoted {
            call.log.line(&format!(
                "{role}: {}/{path}:{} -> :{} {}{}",
                dst.host,
                p.temporary_tag,
                p.tag,
                p.digest,
                p.left_behind
                    .map(|w| format!(" (temporary tag left behind: {w})"))
                    .unwrap_or_default()
            ));
        }
    }
    Ok(RoleOutcome {
        changed: true,
        ..RoleOutcome::default()
    })
}

pub async fn remove_tag(env: &RoleEnv, call: &RoleCall<'_>) -> Result<RoleOutcome, RoleError> {
    let repo = super::var(call, "remove_registry_tag_repository")?
        .and_then(|v| v.as_str().map(String::from))
        .ok_or("remove-registry-tag needs remove_registry_tag_repository")?;
    let tags: Vec<String> = match super::var(call, "remove_registry_tag_tag")? {
        Some(Value::String(s)) => vec![s],
        Some(Value::Array(a)) => a
            .into_iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect(),
        _ => return Err("remove-registry-tag needs remove_registry_tag_tag".into()),
    };
    let (dst, path) = publication(env, call, "remove-registry-tag", &repo)?;
    let store = store_for(&dst, &path)?;
    let mut changed = false;
    for t in tags {
        let (deleted, why) = ops::delete_tag(&store, &t, &RegistryType::Oci).await;
        changed |= deleted;
        call.log.line(&format!(
            "remove-registry-tag: {repo}:{t} {}",
            if deleted {
                "deleted".to_string()
            } else {
                format!("not deleted: {}", why.unwrap_or_default())
            }
        ));
    }
    Ok(RoleOutcome {
        changed,
        ..RoleOutcome::default()
    })
}
