//! A container's name for the journal. C conmon is given it (`--name`); conmon-rs's protocol
//! has no such field, so it is read from the annotations the engine wrote into the bundle's
//! `config.json`.

use std::collections::HashMap;
use std::path::Path;

/// CRI-O's name of the container, `k8s_<container>_<pod>_<namespace>_<pod uid>_<attempt>`:
/// what it passes C conmon as `--name`.
const CRIO_NAME: &str = "io.kubernetes.cri-o.Name";

/// The kubelet's labels and annotation that name is made of, in its order (for an engine that
/// passes them on without a name of its own).
const KUBELET_PARTS: [&str; 5] = [
    "io.kubernetes.container.name",
    "io.kubernetes.pod.name",
    "io.kubernetes.pod.namespace",
    "io.kubernetes.pod.uid",
    "io.kubernetes.container.restartCount",
];

/// The part of an OCI runtime config read here.
#[derive(serde::Deserialize)]
struct OciConfig {
    annotations: Option<HashMap<String, String>>,
}

/// The name of the container in `bundle`, if its annotations give one. The file is read on a
/// blocking thread (the bundle is the caller's path). An unreadable config is no error here
/// (the runtime reports it), only no name.
pub(crate) async fn container_name(bundle: &Path) -> Option<String> {
    let path = bundle.join("config.json");
    let read = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || std::fs::read(path)).await
    };
    let config = match read {
        Ok(Ok(config)) => config,
        Ok(Err(err)) => {
            tracing::debug!(path = %path.display(), error = %err, "no container name: config unreadable");
            return None;
        }
        Err(err) => {
            tracing::debug!(path = %path.display(), error = %err, "no container name: read task failed");
            return None;
        }
    };
    name_from_config(&config).unwrap_or_else(|err| {
        tracing::warn!(path = %path.display(), error = %err, "no container name: config is not an OCI config");
        None
    })
}

/// The name a `config.json` gives: CRI-O's annotation, else one made of the kubelet's parts
/// the way CRI-O makes it, else none.
fn name_from_config(config: &[u8]) -> Result<Option<String>, serde_json::Error> {
    let annotations = serde_json::from_slice::<OciConfig>(config)?
        .annotations
        .unwrap_or_default();
    if let Some(name) = annotations.get(CRIO_NAME).filter(|name| !name.is_empty()) {
        return Ok(Some(name.clone()));
    }
    let parts: Option<Vec<&str>> = KUBELET_PARTS
        .iter()
        .map(|key| annotations.get(*key).map(String::as_str))
        .collect();
    Ok(parts.map(|parts| format!("k8s_{}", parts.join("_"))))
}

#[cfg(test)]
mod tests {
    use super::name_from_config;

    fn name(config: &str) -> Option<String> {
        name_from_config(config.as_bytes()).unwrap()
    }

    #[test]
    fn crio_name_comes_first() {
        let config = r#"{"ociVersion":"1.0.2","annotations":{
            "io.kubernetes.cri-o.Name":"k8s_web_pod_ns_uid_1",
            "io.kubernetes.container.name":"other"}}"#;
        assert_eq!(name(config).as_deref(), Some("k8s_web_pod_ns_uid_1"));
    }

    #[test]
    fn kubelet_labels_make_the_name_crio_would() {
        let config = r#"{"annotations":{
            "io.kubernetes.container.name":"web",
            "io.kubernetes.pod.name":"shop",
            "io.kubernetes.pod.namespace":"prod",
            "io.kubernetes.pod.uid":"5f1c",
            "io.kubernetes.container.restartCount":"2"}}"#;
        assert_eq!(name(config).as_deref(), Some("k8s_web_shop_prod_5f1c_2"));
    }

    #[test]
    fn without_annotations_there_is_no_name() {
        assert_eq!(
            name(r#"{"ociVersion":"1.0.2","process":{"args":["sh"]}}"#),
            None
        );
        assert_eq!(name(r#"{"annotations":null}"#), None);
        assert_eq!(
            name(r#"{"annotations":{"io.kubernetes.pod.name":"shop"}}"#),
            None
        );
    }

    #[test]
    fn a_config_that_is_not_json_is_an_error() {
        assert!(name_from_config(b"not json").is_err());
        assert!(name_from_config(br#"{"annotations":{"a":1}}"#).is_err());
    }
}
