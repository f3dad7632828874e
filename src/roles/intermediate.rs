//! `pull-from-intermediate-registry` and `push-to-intermediate-registry` (ZUUL.md §9):
//! the images of changes ahead come into the buildset registry; after a successful build
//! its images go to the intermediate registry under `<build>_<tag>` and are returned as
//! artifacts for the changes behind.

use super::RoleError;
use serde_json::{Map, Value, json};

use super::images::{any_images, buildset_repository};
use super::{Endpoint, RoleEnv, buildset_endpoint, intermediate_endpoint};
use crate::client::{CopyOptions, ImageRef, StoreFactory};
use crate::oci::Reference;
use crate::playbook::{Returned, RoleCall, RoleOutcome};

fn factory(a: &Endpoint, b: &Endpoint) -> StoreFactory {
    StoreFactory::new(a.options.clone())
        .with_registry_options(&a.host, a.options.clone())
        .with_registry_options(&b.host, b.options.clone())
}

fn reference(host: &str, repo: &str, tag: &str) -> Result<ImageRef, RoleError> {
    ImageRef::parse(&format!("docker://{host}/{repo}:{tag}")).map_err(RoleError::from)
}

pub(super) async fn copy(
    src: &Endpoint,
    src_ref: &ImageRef,
    dst: &Endpoint,
    dst_ref: &ImageRef,
) -> Result<String, RoleError> {
    let t = std::time::Instant::now();
    let f = factory(src, dst);
    let s = f.store(src_ref)?;
    let d = f.store(dst_ref)?;
    tracing::debug!("copy {src_ref}: clients {:.1} ms", super::ms(t));
    let report = crate::client::copy(
        &s,
        &src_ref.reference(),
        &d,
        dst_ref.tag(),
        &CopyOptions::default(),
    )
    .await
    .map_err(RoleError::during(format!("copying {src_ref} to {dst_ref}")))?;
    tracing::debug!("copy {src_ref}: {:.1} ms in all", super::ms(t));
    Ok(report.digest.map(|d| d.to_string()).unwrap_or_default())
}

pub async fn pull(env: &RoleEnv, call: &RoleCall<'_>) -> Result<RoleOutcome, RoleError> {
    let buildset = buildset_endpoint(call)?
        .ok_or("pull-from-intermediate-registry needs buildset_registry")?;
    let artifacts = call
        .vars
        .get("zuul")
        .and_then(|z| z.get("artifacts"))
        .and_then(|a| a.as_array())
        .cloned()
        .unwrap_or_default();
    let images: Vec<&Value> = artifacts
        .iter()
        .filter(|a| a.pointer("/metadata/type").and_then(|t| t.as_str()) == Some("container_image"))
        .collect();
    if images.is_empty() {
        call.log
            .line("pull-from-intermediate-registry: no container images from changes ahead");
        return Ok(RoleOutcome::default());
    }
    let (intermediate, from) = intermediate_endpoint(env, call)?;
    call.log.line(&format!(
        "pull-from-intermediate-registry: intermediate registry {} from {from}",
        intermediate.host
    ));
    // Furthest change first, so for the same repository:tag the nearest change wins.
    for a in images {
        let url = a
            .get("url")
            .and_then(|u| u.as_str())
            .ok_or("artifact without url")?;
        let repo = a
            .pointer("/metadata/repository")
            .and_then(|r| r.as_str())
            .ok_or("artifact without metadata.repository")?;
        let tag = a
            .pointer("/metadata/tag")
            .and_then(|r| r.as_str())
            .unwrap_or("latest");
        let from = Reference::parse(url.trim_start_matches("docker://"))
            .map_err(|e| RoleError::Var(format!("artifact url {url}: {e}")))?;
        // The artifact names the intermediate registry as it was when pushed; gantry's
        // registry may listen elsewhere now: take the path, use the current endpoint.
        let src = reference(
            &intermediate.host,
            &from.repository,
            from.tag.as_deref().unwrap_or("latest"),
        )?;
        let dst = reference(&buildset.host, &buildset_repository(repo)?, tag)?;
        let digest = copy(&intermediate, &src, &buildset, &dst).await?;
        call.log.line(&format!(
            "pull-from-intermediate-registry: {src} -> {dst} ({digest})"
        ));
    }
    Ok(RoleOutcome {
        changed: true,
        ..RoleOutcome::default()
    })
}

pub async fn push(env: &RoleEnv, call: &RoleCall<'_>) -> Result<RoleOutcome, RoleError> {
    let success = match super::var(call, "zuul_success")? {
        None => true,
        Some(Value::Bool(b)) => b,
        Some(Value::String(s)) => matches!(s.to_ascii_lowercase().as_str(), "true" | "yes" | "1"),
        Some(_) => true,
    };
    if !success {
        call.log
            .line("push-to-intermediate-registry: the build did not succeed; nothing pushed");
        return Ok(RoleOutcome::default());
    }
    let buildset =
        buildset_endpoint(call)?.ok_or("push-to-intermediate-registry needs buildset_registry")?;
    let (intermediate, from) = intermediate_endpoint(env, call)?;
    call.log.line(&format!(
        "push-to-intermediate-registry: intermediate registry {} from {from}",
        intermediate.host
    ));
    let build = super::zuul_str(call, "build").ok_or("zuul.build is not set")?;
    let mut artifacts = Vec::new();
    for image in any_images(call)? {
        let repo = buildset_repository(&image.repository)?;
        for tag in &image.tags {
            let src = reference(&buildset.host, &repo, tag)?;
            let dst = reference(&intermediate.host, &repo, &format!("{build}_{tag}"))?;
            let digest =
                copy(&buildset, &src, &intermediate, &dst)
                    .await
                    .map_err(RoleError::during(format!(
                        "intermediate registry {} from {from}",
                        intermediate.host
                    )))?;
            call.log.line(&format!(
                "push-to-intermediate-registry: {src} -> {dst} ({digest})"
            ));
            artifacts.push(json!({
                "name": format!("{}:{tag}", image.repository),
                "url": format!("docker://{}/{repo}:{build}_{tag}", intermediate.host),
                "metadata": {"type": "container_image", "repository": image.repository, "tag": tag},
            }));
        }
    }
    let mut data = Map::new();
    data.insert("zuul".into(), json!({"artifacts": artifacts}));
    Ok(RoleOutcome {
        returned: Returned {
            data,
            secret_data: Map::new(),
        },
        changed: true,
        ..RoleOutcome::default()
    })
}
