//! The query of a port-forward URL, read as kubelet's streaming library reads it.

/// Most ports one port-forward session carries: two channels a port, in one channel byte.
const MAX_PORTS: usize = 127;

/// The ports of a port-forward request: the `port` query parameters (repeatable, each a
/// comma-separated list), with kubelet's error texts; `ports`, conmond's earlier name, is read
/// the same way.
pub(crate) fn ports(query: &str) -> Result<Vec<u16>, String> {
    let mut values = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |text| percent_decode(text).ok_or_else(|| format!("malformed query '{pair}'"));
        if !matches!(decode(key)?.as_str(), "port" | "ports") {
            continue;
        }
        let value = decode(value)?;
        if value.is_empty() {
            return Err("query parameter \"port\" cannot be empty".into());
        }
        values.push(value);
    }
    if values.is_empty() {
        return Err("query parameter \"port\" is required".into());
    }
    let mut ports = Vec::new();
    for value in &values {
        for port in value.split(',') {
            match port.parse::<u16>() {
                Ok(0) => return Err(format!("port {value:?} must be > 0")),
                Ok(port) => ports.push(port),
                Err(err) => return Err(format!("unable to parse {value:?} as a port: {err}")),
            }
        }
    }
    if ports.len() > MAX_PORTS {
        return Err(format!(
            "at most {MAX_PORTS} ports can be forwarded at once"
        ));
    }
    Ok(ports)
}

/// Decodes `%XX` escapes and `+` (a space in forms).
fn percent_decode(text: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        rest = tail;
        match byte {
            b'%' => {
                // Exactly two hex digits (`from_str_radix` alone would take `+8`).
                let digits = rest.get(..2)?;
                let value = |digit: u8| char::from(digit).to_digit(16);
                let (high, low) = (value(digits[0])?, value(digits[1])?);
                bytes.push(u8::try_from(high * 16 + low).ok()?);
                rest = &rest[2..];
            }
            b'+' => bytes.push(b' '),
            byte => bytes.push(byte),
        }
    }
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_escapes_take_exactly_two_hex_digits() {
        assert_eq!(percent_decode("a%2Fb+c").as_deref(), Some("a/b c"));
        assert_eq!(percent_decode("%+8"), None);
        assert_eq!(percent_decode("%4"), None);
        assert_eq!(percent_decode("%zz"), None);
    }

    #[test]
    fn ports_come_from_port_as_kubelet_reads_it() {
        assert_eq!(ports("port=80"), Ok(vec![80]));
        assert_eq!(ports("port=80,8080&x=1&port=9"), Ok(vec![80, 8080, 9]));
        assert_eq!(ports("port=80%2C81"), Ok(vec![80, 81]));
        // conmond's earlier name, and both at once.
        assert_eq!(ports("ports=80&port=81"), Ok(vec![80, 81]));
        assert_eq!(
            ports("").unwrap_err(),
            r#"query parameter "port" is required"#
        );
        assert_eq!(ports("ports=1").map(|p| p.len()), Ok(1));
        assert_eq!(
            ports("port=").unwrap_err(),
            r#"query parameter "port" cannot be empty"#
        );
        assert_eq!(ports("port=0").unwrap_err(), r#"port "0" must be > 0"#);
        let err = ports("port=80,http").unwrap_err();
        assert!(
            err.starts_with(r#"unable to parse "80,http" as a port: "#),
            "{err}"
        );
        assert!(ports("port= 80").is_err(), "kubelet does not trim");
        assert!(ports("port=%zz").unwrap_err().contains("malformed"));
        let many = vec!["1"; 128].join(",");
        assert!(
            ports(&format!("port={many}"))
                .unwrap_err()
                .contains("at most 127")
        );
    }
}
