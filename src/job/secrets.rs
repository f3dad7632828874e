//! Secrets: RSA-OAEP encryption in Zuul's format, and decryption at run time (ZUUL.md §4).
//!
//! Owns: the crypto (RSA-4096, OAEP with SHA-1 and MGF1-SHA-1, empty label — what Zuul and
//! `zuul-client encrypt` use), cutting plaintext into pieces that fit one ciphertext, the
//! PEM forms of keys, and the `- secret:` stanza zuul-client prints. Must not: read or write
//! files (see `job::keys`), or ever put secret data into an error message.

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rsa::{
    KeySize, OAEP_SHA1_MGF1SHA1, OaepPrivateDecryptingKey, OaepPublicEncryptingKey,
    PrivateDecryptingKey, PublicEncryptingKey,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use crate::job::config::{SecretDef, SecretValue};

/// OAEP with SHA-1 costs 2 × 20 + 2 bytes of each RSA block: a 4096-bit key carries 470
/// bytes of plaintext per ciphertext (zuul-client computes `nbytes - 42` the same way).
pub const OAEP_SHA1_OVERHEAD: usize = 42;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("generating an rsa key pair failed")]
    Generate,
    #[error("reading the {what}: {reason}")]
    Key { what: &'static str, reason: String },
    #[error("encrypting failed")]
    Encrypt,
    #[error(
        "secret \"{secret}\" ({loc}) is encrypted but no private key for the project was given"
    )]
    NoKey { secret: String, loc: String },
    #[error(
        "secret \"{secret}\" ({loc}): \"{field}\" chunk {chunk} does not decrypt with the project key"
    )]
    Decrypt {
        secret: String,
        loc: String,
        field: String,
        chunk: usize,
    },
    #[error("secret \"{secret}\" ({loc}): \"{field}\" is not valid utf-8 after decryption")]
    Utf8 {
        secret: String,
        loc: String,
        field: String,
    },
}

/// A project's private key (decrypts secrets).
#[derive(Debug)]
pub struct PrivateKey {
    key: PrivateDecryptingKey,
}

/// A project's public key (what users encrypt with).
#[derive(Debug, Clone)]
pub struct PublicKey {
    key: PublicEncryptingKey,
}

impl PrivateKey {
    /// A new RSA-4096 key.
    pub fn generate() -> Result<PrivateKey, SecretError> {
        let key =
            PrivateDecryptingKey::generate(KeySize::Rsa4096).map_err(|_| SecretError::Generate)?;
        Ok(PrivateKey { key })
    }

    /// PKCS#8 (`PRIVATE KEY`) or PKCS#1 (`RSA PRIVATE KEY`, as Zuul exports keys) PEM.
    pub fn from_pem(pem: &str) -> Result<PrivateKey, SecretError> {
        let bad = |reason: String| SecretError::Key {
            what: "private key",
            reason,
        };
        let der = match pem_decode(pem, "PRIVATE KEY") {
            Some(der) => der,
            None => {
                let pkcs1 = pem_decode(pem, "RSA PRIVATE KEY")
                    .ok_or_else(|| bad("no PRIVATE KEY or RSA PRIVATE KEY block".into()))?;
                pkcs1_to_pkcs8(&pkcs1)
            }
        };
        let key = PrivateDecryptingKey::from_pkcs8(&der).map_err(|e| bad(e.to_string()))?;
        Ok(PrivateKey { key })
    }

    /// PKCS#8 PEM.
    pub fn to_pem(&self) -> Result<String, SecretError> {
        let der: Pkcs8V1Der<'static> = self.key.as_der().map_err(|_| SecretError::Generate)?;
        Ok(pem_encode("PRIVATE KEY", der.as_ref()))
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey {
            key: self.key.public_key(),
        }
    }

    pub fn bits(&self) -> usize {
        self.key.key_size_bits()
    }

    /// Decrypt one base64 chunk (whitespace is ignored, as Python's b64decode does).
    pub fn decrypt_chunk(&self, chunk: &str) -> Option<Vec<u8>> {
        let clean: String = chunk.chars().filter(|c| !c.is_whitespace()).collect();
        let ciphertext = B64.decode(clean).ok()?;
        let oaep = OaepPrivateDecryptingKey::new(self.key.clone()).ok()?;
        let mut out = vec![0u8; oaep.min_output_size()];
        let plain = oaep
            .decrypt(&OAEP_SHA1_MGF1SHA1, &ciphertext, &mut out, None)
            .ok()?;
        Some(plain.to_vec())
    }
}

impl PublicKey {
    /// SubjectPublicKeyInfo (`PUBLIC KEY`, what Zuul's key API serves) or PKCS#1
    /// (`RSA PUBLIC KEY`) PEM.
    pub fn from_pem(pem: &str) -> Result<PublicKey, SecretError> {
        let bad = |reason: String| SecretError::Key {
            what: "public key",
            reason,
        };
        let der = match pem_decode(pem, "PUBLIC KEY") {
            Some(der) => der,
            None => {
                let pkcs1 = pem_decode(pem, "RSA PUBLIC KEY")
                    .ok_or_else(|| bad("no PUBLIC KEY or RSA PUBLIC KEY block".into()))?;
                pkcs1_public_to_spki(&pkcs1)
            }
        };
        let key = PublicEncryptingKey::from_der(&der).map_err(|e| bad(e.to_string()))?;
        Ok(PublicKey { key })
    }

    pub fn to_pem(&self) -> Result<String, SecretError> {
        let der: PublicKeyX509Der<'static> = self.key.as_der().map_err(|_| SecretError::Encrypt)?;
        Ok(pem_encode("PUBLIC KEY", der.as_ref()))
    }

    /// Plaintext bytes one ciphertext carries (470 for RSA-4096).
    pub fn chunk_bytes(&self) -> usize {
        self.key.key_size_bytes().saturating_sub(OAEP_SHA1_OVERHEAD)
    }

    /// Encrypt as zuul-client does: pieces of at most [`Self::chunk_bytes`] bytes (cut on
    /// UTF-8 character boundaries), each one base64 ciphertext.
    pub fn encrypt(&self, plaintext: &str) -> Result<Vec<String>, SecretError> {
        let oaep =
            OaepPublicEncryptingKey::new(self.key.clone()).map_err(|_| SecretError::Encrypt)?;
        let mut out = vec![];
        for piece in split_utf8(plaintext, self.chunk_bytes()) {
            let mut buf = vec![0u8; oaep.ciphertext_size()];
            let ct = oaep
                .encrypt(&OAEP_SHA1_MGF1SHA1, piece.as_bytes(), &mut buf, None)
                .map_err(|_| SecretError::Encrypt)?;
            out.push(B64.encode(ct));
        }
        Ok(out)
    }
}

/// Cut `s` into pieces of at most `max` bytes without splitting a character. An empty
/// string is one empty piece (it still encrypts to one chunk).
pub fn split_utf8(s: &str, max: usize) -> Vec<&str> {
    let mut out = vec![];
    let mut rest = s;
    while rest.len() > max {
        let mut cut = max;
        while cut > 0 && !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        if cut == 0 {
            // `max` is smaller than one character: take the character whole.
            cut = rest.chars().next().map_or(rest.len(), char::len_utf8);
        }
        out.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    out.push(rest);
    out
}

/// The stanza `zuul-client encrypt` prints: chunks wrapped at 79 columns with the first
/// line indented 8 and the rest 10 (Python's `textwrap.fill`).
pub fn secret_stanza(name: &str, field: &str, chunks: &[String]) -> String {
    let mut out =
        format!("- secret:\n    name: {name}\n    data:\n      {field}: !encrypted/pkcs1-oaep\n");
    for chunk in chunks {
        let text = format!("- {chunk}");
        let mut first = true;
        let mut rest = text.as_str();
        while !rest.is_empty() {
            let (indent, width) = if first { (8, 71) } else { (10, 69) };
            let take = rest.len().min(width);
            out.push_str(&" ".repeat(indent));
            out.push_str(&rest[..take]);
            out.push('\n');
            rest = &rest[take..];
            first = false;
        }
    }
    out
}

impl SecretDef {
    /// The secret's data with every encrypted leaf decrypted (`key` may be `None` for a
    /// secret written in plaintext). Errors name the secret, its file and the field — never
    /// the data.
    pub fn decrypt(&self, key: Option<&PrivateKey>) -> Result<serde_json::Value, SecretError> {
        decrypt_value(self, &self.data, "data", key)
    }
}

fn decrypt_value(
    def: &SecretDef,
    value: &SecretValue,
    path: &str,
    key: Option<&PrivateKey>,
) -> Result<serde_json::Value, SecretError> {
    use serde_json::Value as J;
    Ok(match value {
        SecretValue::Plain(v) => v.clone(),
        SecretValue::List(items) => J::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| decrypt_value(def, v, &format!("{path}[{i}]"), key))
                .collect::<Result<_, _>>()?,
        ),
        SecretValue::Map(entries) => {
            let mut map = serde_json::Map::new();
            for (k, v) in entries {
                map.insert(
                    k.clone(),
                    decrypt_value(def, v, &format!("{path}.{k}"), key)?,
                );
            }
            J::Object(map)
        }
        SecretValue::Encrypted(chunks) => {
            let Some(key) = key else {
                return Err(SecretError::NoKey {
                    secret: def.name.clone(),
                    loc: def.loc.to_string(),
                });
            };
            let mut bytes = vec![];
            let mut text = String::new();
            for (i, chunk) in chunks.iter().enumerate() {
                let plain = key
                    .decrypt_chunk(chunk)
                    .ok_or_else(|| SecretError::Decrypt {
                        secret: def.name.clone(),
                        loc: def.loc.to_string(),
                        field: path.to_string(),
                        chunk: i + 1,
                    })?;
                bytes.clear();
                bytes.extend_from_slice(&plain);
                // Zuul decodes each chunk on its own, so each must be whole UTF-8.
                let piece = std::str::from_utf8(&bytes).map_err(|_| SecretError::Utf8 {
                    secret: def.name.clone(),
                    loc: def.loc.to_string(),
                    field: path.to_string(),
                })?;
                text.push_str(piece);
            }
            J::String(text)
        }
    })
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = B64.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn pem_decode(pem: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)? + begin.len();
    let stop = start + pem[start..].find(&end)?;
    let body: String = pem[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    B64.decode(body).ok()
}

/// DER length octets.
fn der_len(n: usize, out: &mut Vec<u8>) {
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes: Vec<u8> = n
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    der_len(content.len(), &mut out);
    out.extend_from_slice(content);
    out
}

/// `AlgorithmIdentifier { rsaEncryption (1.2.840.113549.1.1.1), NULL }`.
const RSA_ALGORITHM: [u8; 15] = [
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
];

/// RFC 5208: `PrivateKeyInfo { version 0, rsaEncryption, OCTET STRING pkcs1 }`.
fn pkcs1_to_pkcs8(pkcs1: &[u8]) -> Vec<u8> {
    let mut body = vec![0x02, 0x01, 0x00];
    body.extend_from_slice(&RSA_ALGORITHM);
    body.extend(der(0x04, pkcs1));
    der(0x30, &body)
}

/// RFC 5280: `SubjectPublicKeyInfo { rsaEncryption, BIT STRING pkcs1 }`.
fn pkcs1_public_to_spki(pkcs1: &[u8]) -> Vec<u8> {
    let mut bits = vec![0x00];
    bits.extend_from_slice(pkcs1);
    let mut body = RSA_ALGORITHM.to_vec();
    body.extend(der(0x03, &bits));
    der(0x30, &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    /// One key for all tests: RSA-4096 generation takes a while in debug builds.
    fn key() -> &'static PrivateKey {
        static KEY: OnceLock<PrivateKey> = OnceLock::new();
        KEY.get_or_init(|| PrivateKey::generate().unwrap())
    }

    #[test]
    fn split_respects_utf8_and_size() {
        assert_eq!(split_utf8("", 470), vec![""]);
        assert_eq!(split_utf8("abcdef", 4), vec!["abcd", "ef"]);
        // "é" is two bytes: a cut at 3 would split it.
        assert_eq!(split_utf8("abé€x", 3), vec!["ab", "é", "€", "x"]);
        let long = "ü".repeat(300); // 600 bytes
        let parts = split_utf8(&long, 470);
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            vec![470, 130]
        );
        assert_eq!(parts.concat(), long);
    }

    #[test]
    fn roundtrip_4096_with_multiple_chunks() {
        let key = key();
        assert_eq!(key.bits(), 4096);
        let public = key.public_key();
        assert_eq!(public.chunk_bytes(), 470);
        let text = format!("{}€{}", "x".repeat(469), "y".repeat(600));
        let chunks = public.encrypt(&text).unwrap();
        assert_eq!(chunks.len(), 3, "469 + 3-byte char does not fit 470");
        let mut out = String::new();
        for c in &chunks {
            out.push_str(std::str::from_utf8(&key.decrypt_chunk(c).unwrap()).unwrap());
        }
        assert_eq!(out, text);
    }

    #[test]
    fn pem_roundtrips_and_pkcs1_forms() {
        let key = key();
        let pem = key.to_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let again = PrivateKey::from_pem(&pem).unwrap();
        let public = PublicKey::from_pem(&key.public_key().to_pem().unwrap()).unwrap();
        let chunk = &public.encrypt("hello").unwrap()[0];
        assert_eq!(again.decrypt_chunk(chunk).unwrap(), b"hello");
        assert!(PrivateKey::from_pem("nonsense").is_err());
    }

    #[test]
    fn stanza_matches_zuul_client_layout() {
        let chunk = "A".repeat(100);
        let s = secret_stanza("registry", "password", &[chunk]);
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines[0], "- secret:");
        assert_eq!(lines[3], "      password: !encrypted/pkcs1-oaep");
        assert_eq!(lines[4], format!("        - {}", "A".repeat(69)));
        assert_eq!(lines[5], format!("          {}", "A".repeat(31)));
        assert!(lines.iter().all(|l| l.len() <= 79));
    }
}
