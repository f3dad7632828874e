//! Property tests for the parsers that face untrusted input (issue 16 item 4): references,
//! repository names and tags, digests, manifests, the registry's path parser, Dockerfiles,
//! `.dockerignore` patterns and the Zuul YAML loader never panic, whatever the bytes; the
//! printers round-trip (reference and digest `Display` ↔ `parse`).
//!
//! Case counts stay at proptest's default (256) or lower so the suite stays fast.

use gantry::build::{dockerfile, ignore::Ignore};
use gantry::job::config::{Config, LoadOptions, Origin, SourceFile};
use gantry::oci::{Digest, Manifest, Reference, validate_repository, validate_tag};
use proptest::prelude::*;

/// Strings built from the characters the parsers treat specially, so that arbitrary input
/// reaches their inner branches rather than failing on the first byte.
fn reference_like() -> impl Strategy<Value = String> {
    "[a-z0-9A-Z:/@._+=-]{0,80}"
}

fn valid_reference() -> impl Strategy<Value = (String, String, Option<String>, Option<String>)> {
    (
        "[a-z][a-z0-9]{0,7}(\\.[a-z]{2,3})?:[1-9][0-9]{1,3}",
        "[a-z0-9]{1,8}([._-][a-z0-9]{1,4})?(/[a-z0-9]{1,8}){0,2}",
        proptest::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}"),
        proptest::option::of("[0-9a-f]{64}"),
    )
}

proptest! {
    #[test]
    fn references_never_panic_and_round_trip(s in reference_like()) {
        if let Ok(r) = Reference::parse(&s) {
            let again = Reference::parse(&r.to_string());
            prop_assert_eq!(again.as_ref(), Ok(&r), "{} printed as {}", s, r);
        }
    }

    #[test]
    fn arbitrary_text_as_reference_never_panics(s in any::<String>()) {
        let _ = Reference::parse(&s);
        let _ = validate_repository(&s);
        let _ = validate_tag(&s);
        let _ = Digest::parse(&s);
        let _ = gantry::registry::path::parse(&s);
    }

    #[test]
    fn valid_references_round_trip((host, repo, tag, hex) in valid_reference()) {
        let mut s = format!("{host}/{repo}");
        if let Some(t) = &tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(h) = &hex {
            s.push_str("@sha256:");
            s.push_str(h);
        }
        let r = Reference::parse(&s).map_err(|e| TestCaseError::fail(format!("{s}: {e}")))?;
        prop_assert_eq!(&r.registry, &host);
        prop_assert_eq!(&r.repository, &repo);
        prop_assert_eq!(&r.tag, &tag);
        prop_assert_eq!(r.to_string(), s);
    }

    #[test]
    fn digests_round_trip(hex in "[0-9a-f]{64}", hex512 in "[0-9a-f]{128}") {
        for s in [format!("sha256:{hex}"), format!("sha512:{hex512}")] {
            let d = Digest::parse(&s).map_err(|e| TestCaseError::fail(format!("{s}: {e}")))?;
            prop_assert_eq!(d.to_string(), s);
        }
        // Upper case and wrong lengths are refused, not panicked on.
        let upper = format!("sha256:{}", hex.to_uppercase());
        let upper_refused = Digest::parse(&upper).is_err();
        prop_assert!(upper_refused || !hex.bytes().any(|b| b.is_ascii_alphabetic()));
        let short = format!("sha256:{}", &hex[1..]);
        prop_assert!(Digest::parse(&short).is_err());
    }

    #[test]
    fn manifests_from_arbitrary_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
        ct in proptest::option::of("application/(json|vnd\\.oci\\.image\\.(manifest|index)\\.v1\\+json|vnd\\.docker\\.distribution\\.manifest\\.(v2|list\\.v2)\\+json)"),
    ) {
        let _ = Manifest::parse(&bytes, ct.as_deref());
    }

    #[test]
    fn manifest_shaped_json_never_panics(
        schema in prop_oneof![Just("2".to_string()), "-?[0-9]{1,3}", Just("null".into())],
        media in "[a-z./+0-9-]{0,60}",
        size in prop_oneof![Just("18446744073709551615".to_string()), Just("-1".into()), "[0-9]{1,20}", Just("1e400".into())],
        digest in "(sha256|sha512|md5)?:?[0-9a-fA-F]{0,70}",
        layers in 0usize..4,
    ) {
        let desc = format!(r#"{{"mediaType":"{media}","digest":"{digest}","size":{size}}}"#);
        let list = vec![desc.clone(); layers].join(",");
        for doc in [
            format!(r#"{{"schemaVersion":{schema},"mediaType":"{media}","config":{desc},"layers":[{list}]}}"#),
            format!(r#"{{"schemaVersion":{schema},"mediaType":"{media}","manifests":[{list}]}}"#),
        ] {
            let _ = Manifest::parse(doc.as_bytes(), None);
            let _ = Manifest::parse(doc.as_bytes(), Some(&media));
        }
    }

    #[test]
    fn registry_paths_never_panic(
        name in "[a-z0-9._/-]{0,40}",
        kind in prop_oneof![Just("manifests"), Just("blobs"), Just("tags"), Just("referrers"), Just("blobs/uploads"), Just("x")],
        tail in "[a-zA-Z0-9:._/?=-]{0,80}",
    ) {
        let _ = gantry::registry::path::parse(&format!("/{name}/{kind}/{tail}"));
        let _ = gantry::registry::path::parse(&format!("{name}/{kind}/{tail}"));
    }

    #[test]
    fn dockerfiles_never_panic(lines in proptest::collection::vec(dockerfile_line(), 0..12)) {
        let text = lines.join("\n");
        let _ = dockerfile::parse("Dockerfile", &text);
    }

    #[test]
    fn arbitrary_dockerfile_text_never_panics(text in any::<String>()) {
        let _ = dockerfile::parse("Dockerfile", &text);
    }

    #[test]
    fn dockerignore_never_panics(
        patterns in proptest::collection::vec("!?[a-z*?/.\\\\\\[\\]^!{},-]{0,16}", 0..8),
        paths in proptest::collection::vec("[a-z*?/.\\[\\]!{}-]{0,24}", 0..8),
    ) {
        if let Ok(ig) = Ignore::parse(&patterns.join("\n")) {
            for p in &paths {
                let _ = ig.excluded(p);
            }
        }
    }

    #[test]
    fn literal_dockerignore_patterns_match_themselves(name in "[a-z0-9_.-]{1,12}(/[a-z0-9_-]{1,12}){0,3}") {
        prop_assume!(!name.split('/').any(|s| s == "." || s == ".."));
        let ig = Ignore::parse(&name).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(ig.excluded(&name));
        let child = format!("{name}/child");
        prop_assert!(ig.excluded(&child), "a directory's contents are excluded with it");
        let not = Ignore::parse(&format!("{name}\n!{name}")).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(!not.excluded(&name), "last match wins");
    }
}

fn dockerfile_line() -> impl Strategy<Value = String> {
    let keyword = prop_oneof![
        Just("FROM"),
        Just("RUN"),
        Just("COPY"),
        Just("ADD"),
        Just("ARG"),
        Just("ENV"),
        Just("LABEL"),
        Just("WORKDIR"),
        Just("CMD"),
        Just("ENTRYPOINT"),
        Just("HEALTHCHECK"),
        Just("ONBUILD"),
        Just("# escape=`"),
        Just("# syntax=x"),
        Just("EXPOSE"),
        Just("SHELL"),
        Just("from"),
    ];
    (keyword, "[ a-z0-9=:$\\{\\}\\[\\]\"'`\\\\/.*-]{0,30}")
        .prop_map(|(k, rest)| format!("{k} {rest}"))
}

fn zuul_like() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        Just("- job:".to_string()),
        Just("- project:".to_string()),
        Just("- pipeline:".to_string()),
        Just("- secret:".to_string()),
        Just("- nodeset:".to_string()),
        Just("- project-template:".to_string()),
        "  (name|parent|run|vars|requires|provides|dependencies|check|jobs|nodeset|branches|files|timeout|abstract|final|voting): [a-z0-9{}\\[\\],:!&*'\"-]{0,16}",
        "    - [a-z0-9{}\\[\\]:!&*-]{0,12}",
        "      [a-z]{1,6}: [a-z0-9{}\\[\\]:!&*-]{0,12}",
        Just("  vars: !!merge <<: *x".to_string()),
        Just("  secret: !encrypted/pkcs1-oaep".to_string()),
    ];
    proptest::collection::vec(line, 0..16).prop_map(|l| l.join("\n"))
}

fn config_from(text: String) -> Result<Config, gantry::job::config::ConfigErrors> {
    Config::from_sources(
        vec![SourceFile {
            display: "zuul.yaml".into(),
            text,
            origin: Origin::Project,
            root: std::path::PathBuf::from("/nonexistent"),
            repo: None,
        }],
        &LoadOptions {
            project_name: Some("proj".into()),
            allow_external: true,
            ..LoadOptions::default()
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn yaml_never_panics(text in any::<String>()) {
        let _ = gantry::text::yaml::parse(&text);
    }

    #[test]
    fn zuul_config_never_panics(text in zuul_like()) {
        let _ = gantry::text::yaml::parse(&text);
        let _ = config_from(text);
    }

    #[test]
    fn arbitrary_text_as_zuul_config_never_panics(text in any::<String>()) {
        let _ = config_from(text);
    }
}
