//! The one check of an HTTP `Host` header that the API, the status page and the gateway
//! share: a web page elsewhere must not reach them through DNS rebinding, so they answer
//! only requests that name a loopback address (`127.0.0.1`, `localhost`, `[::1]`).

/// The port a loopback `Host` header names: `Some(None)` for a loopback name without a
/// port, `Some(Some(port))` with one, `None` for anything that is not loopback (or not a
/// well-formed host).
pub fn loopback_port(host: &str) -> Option<Option<u16>> {
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let (addr, after) = rest.split_once(']')?;
        if addr != "::1" {
            return None;
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (addr, port)
    } else {
        match host.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        }
    };
    let loopback = name == "::1" || name == "127.0.0.1" || name.eq_ignore_ascii_case("localhost");
    if !loopback {
        return None;
    }
    match port {
        None => Some(None),
        Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            p.parse().ok().map(Some)
        }
        Some(_) => None,
    }
}

/// Whether a `Host` header names this machine's loopback interface, on any port.
pub fn is_loopback_host(host: &str) -> bool {
    loopback_port(host).is_some()
}

/// Whether a `Host` header names this machine's loopback interface on `port` exactly.
pub fn is_loopback_host_on(host: &str, port: u16) -> bool {
    loopback_port(host) == Some(Some(port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for ok in [
            "127.0.0.1",
            "127.0.0.1:8080",
            "localhost",
            "LOCALHOST:1",
            "[::1]",
            "[::1]:7",
        ] {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "127.0.0.1.evil.example",
            "localhost.evil",
            "127.0.0.2",
            "[::2]:1",
            "127.0.0.1:",
            "127.0.0.1:abc",
            "[::1]x",
            "[::1]:",
            "",
            "localhost:123456",
            "localhost:99999",
            "0.0.0.0",
            "::1",
        ] {
            assert!(!is_loopback_host(bad), "{bad}");
        }
    }

    #[test]
    fn only_loopback_hosts_with_the_port() {
        assert!(is_loopback_host_on("127.0.0.1:7401", 7401));
        assert!(is_loopback_host_on("localhost:7401", 7401));
        assert!(is_loopback_host_on("[::1]:7401", 7401));
        assert!(!is_loopback_host_on("127.0.0.1:80", 7401));
        assert!(!is_loopback_host_on("evil.example:7401", 7401));
        assert!(!is_loopback_host_on("localhost", 7401));
    }
}
