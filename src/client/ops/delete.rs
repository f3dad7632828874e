//! `delete_tag`: the OCI tag DELETE, with the registry-specific APIs (Docker Hub, quay.io)
//! as fallbacks for registries that refuse it.

use super::RegistryType;
use crate::client::{ClientError, Result, Store};

/// Deletes a tag with the OCI API, falling back to the registry-specific API.
/// Returns (deleted, why not).
pub async fn delete_tag(
    store: &Store,
    tag: &str,
    registry_type: &RegistryType,
) -> (bool, Option<String>) {
    let oci = store.delete(tag).await;
    let oci_err = match oci {
        Ok(true) => return (true, None),
        Ok(false) => return (false, Some(format!("tag {tag} was not found"))),
        Err(e) => e,
    };
    let Store::Registry { client, repo } = store else {
        return (false, Some(oci_err.to_string()));
    };
    let fallback = match registry_type {
        RegistryType::Oci => {
            return (
                false,
                Some(format!(
                    "{oci_err} (set --registry-type for a registry-specific API)"
                )),
            );
        }
        RegistryType::DockerHub {
            username,
            password,
            api_url,
        } => {
            let base = api_url.as_deref().unwrap_or(DOCKER_HUB_API);
            dockerhub_delete(base.trim_end_matches('/'), repo, tag, username, password).await
        }
        RegistryType::Quay { token } => quay_delete(&client.registry, repo, tag, token).await,
    };
    match fallback {
        Ok(()) => (true, None),
        Err(e) => (false, Some(format!("{oci_err}; fallback: {e}"))),
    }
}

/// Docker Hub's own API (not the registry at registry-1.docker.io).
pub const DOCKER_HUB_API: &str = "https://hub.docker.com";

fn api_client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .user_agent(concat!("gantry/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ClientError::Invalid(e.to_string()))
}

/// Docker Hub: `POST /v2/users/login/` for a JWT, then
/// `DELETE /v2/repositories/<namespace>/<repo>/tags/<tag>/`, under `base`
/// (`RegistryType::DockerHub::api_url`, default [`DOCKER_HUB_API`]).
async fn dockerhub_delete(
    base: &str,
    repo: &str,
    tag: &str,
    username: &str,
    password: &str,
) -> Result<()> {
    let http = api_client()?;
    let login = http
        .post(format!("{base}/v2/users/login/"))
        .json(&serde_json::json!({"username": username, "password": password}))
        .send()
        .await
        .map_err(|e| ClientError::Transport {
            method: "POST".into(),
            url: format!("{base}/v2/users/login/"),
            message: e.to_string(),
        })?;
    if !login.status().is_success() {
        return Err(ClientError::Auth {
            registry: "hub.docker.com".into(),
            why: format!("login answered {}", login.status()),
        });
    }
    let token = login
        .json::<serde_json::Value>()
        .await
        .ok()
        .and_then(|v| v["token"].as_str().map(String::from))
        .ok_or_else(|| ClientError::Auth {
            registry: "hub.docker.com".into(),
            why: "login response without token".into(),
        })?;
    let url = format!("{base}/v2/repositories/{repo}/tags/{tag}/");
    api_delete(
        http.delete(&url)
            .header("Authorization", format!("JWT {token}")),
        url,
    )
    .await
}

/// Sends a registry-API DELETE; any 2xx is success.
async fn api_delete(req: reqwest::RequestBuilder, url: String) -> Result<()> {
    let resp = req.send().await.map_err(|e| ClientError::Transport {
        method: "DELETE".into(),
        url: url.clone(),
        message: e.to_string(),
    })?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(ClientError::Status {
            method: "DELETE".into(),
            url,
            status: resp.status().as_u16(),
            codes: Default::default(),
        })
    }
}

/// quay.io: `DELETE /api/v1/repository/<namespace>/<repo>/tag/<tag>` with a Bearer token.
async fn quay_delete(registry: &str, repo: &str, tag: &str, token: &str) -> Result<()> {
    let url = format!("https://{registry}/api/v1/repository/{repo}/tag/{tag}");
    let http = api_client()?;
    api_delete(http.delete(&url).bearer_auth(token), url).await
}
