//! `--listen` values as people write them: `127.0.0.1:5000`, `[::1]:5000`, `:5000` (every
//! interface, as docker-registry's `addr: :5000`), `localhost:5000` (resolved, preferring
//! IPv4 loopback).

use std::net::{SocketAddr, ToSocketAddrs};

/// Parses a listen address (clap value parser).
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Some(port) = s.strip_prefix(':') {
        let port: u16 = port
            .parse()
            .map_err(|_| format!("{s:?}: the port must be a number from 0 to 65535"))?;
        return Ok(SocketAddr::from(([0, 0, 0, 0], port)));
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(format!(
            "{s:?}: expected HOST:PORT, e.g. 127.0.0.1:5000 or :5000"
        ));
    };
    if port.parse::<u16>().is_err() {
        return Err(format!("{s:?}: the port must be a number from 0 to 65535"));
    }
    if host.is_empty() || host.contains(['/', ' ']) {
        return Err(format!(
            "{s:?}: expected HOST:PORT, e.g. 127.0.0.1:5000 or :5000"
        ));
    }
    let addrs: Vec<SocketAddr> = s
        .to_socket_addrs()
        .map_err(|e| format!("{s:?}: cannot resolve {host:?}: {e}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| format!("{s:?}: {host:?} resolves to no address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_forms() {
        assert_eq!(
            parse_listen("127.0.0.1:0").unwrap().to_string(),
            "127.0.0.1:0"
        );
        assert_eq!(parse_listen(":5000").unwrap().to_string(), "0.0.0.0:5000");
        assert_eq!(
            parse_listen("localhost:5000").unwrap().to_string(),
            "127.0.0.1:5000"
        );
        assert_eq!(
            parse_listen("[::1]:5000").unwrap().to_string(),
            "[::1]:5000"
        );
        assert!(parse_listen("5000").unwrap_err().contains("HOST:PORT"));
        assert!(parse_listen(":x").unwrap_err().contains("port"));
    }
}
