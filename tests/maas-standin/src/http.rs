//! Just enough HTTP/1.1 for the stand-in: a threaded server (one request per connection) and a
//! blocking client. The server is plain HTTP (MAAS's nginx terminates TLS, as in MAAS); the
//! client speaks https too, verifying the server against a CA file as the MAAS CLI does with
//! `--cacerts` (canonical/maas `src/maascli/cli.py` `cmd_login`, `src/maascli/api.py`).

use anyhow::{anyhow, bail, Context, Result};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::Arc;
use std::time::Duration;

/// Largest request body accepted; the API never needs more.
const MAX_BODY: usize = 1 << 20;

/// A parsed request.
#[derive(Debug, Clone)]
pub struct Request {
    /// `GET`, `POST`, `PUT`, ...
    pub method: String,
    /// Path without the query string, percent-decoded.
    pub path: String,
    /// Query string pairs.
    pub query: Vec<(String, String)>,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
    /// Who connected.
    pub peer: SocketAddr,
}

impl Request {
    /// A header by lower-case name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Query and form-encoded body parameters together (MAAS reads both).
    pub fn params(&self) -> Vec<(String, String)> {
        let mut p = self.query.clone();
        let ct = self.header("content-type").unwrap_or("");
        if ct.starts_with("application/x-www-form-urlencoded")
            || (ct.is_empty() && !self.body.is_empty())
        {
            p.extend(crate::util::form_decode(&String::from_utf8_lossy(
                &self.body,
            )));
        }
        p
    }

    /// One parameter.
    pub fn param(&self, name: &str) -> Option<String> {
        self.params()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }
}

/// A response to send.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Content type.
    pub content_type: String,
    /// Body.
    pub body: Vec<u8>,
}

impl Response {
    /// A JSON response.
    pub fn json(status: u16, v: &serde_json::Value) -> Response {
        Response {
            status,
            content_type: "application/json".into(),
            body: v.to_string().into_bytes(),
        }
    }
    /// A plain-text response.
    pub fn text(status: u16, s: impl Into<String>) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8".into(),
            body: s.into().into_bytes(),
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        301 => "Moved Permanently",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// Handler type for [`serve`].
pub type Handler = Arc<dyn Fn(Request) -> Response + Send + Sync>;

/// Accepts connections forever, one thread per connection.
pub fn serve(listener: TcpListener, handler: Handler) {
    for conn in listener.incoming() {
        let Ok(stream) = conn else { continue };
        let h = handler.clone();
        let _ = std::thread::Builder::new()
            .name("http-conn".into())
            .spawn(move || {
                let _ = handle(stream, &h);
            });
    }
}

/// Accepts connections on a Unix socket forever (regiond's worker sockets behind nginx). The
/// client is whom nginx names in `X-Real-IP` (regiond.nginx.conf.template sets it), else local.
pub fn serve_unix(listener: UnixListener, handler: Handler) {
    for conn in listener.incoming() {
        let Ok(stream) = conn else { continue };
        let h = handler.clone();
        let _ = std::thread::Builder::new()
            .name("http-conn".into())
            .spawn(move || {
                let _ = handle_unix(stream, &h);
            });
    }
}

fn handle_unix(stream: UnixStream, handler: &Handler) -> Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let local = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut reader = BufReader::new(stream.try_clone()?);
    let resp = match read_request(&mut reader, local) {
        Ok(Some(mut req)) => {
            if let Some(ip) = req
                .header("x-real-ip")
                .and_then(|v| v.parse::<std::net::IpAddr>().ok())
            {
                req.peer = SocketAddr::new(ip, 0);
            }
            handler(req)
        }
        Ok(None) => return Ok(()),
        Err(e) => Response::text(400, format!("{e}\n")),
    };
    write_response(stream, &resp)
}

fn handle(stream: TcpStream, handler: &Handler) -> Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let peer = stream.peer_addr()?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let resp = match read_request(&mut reader, peer) {
        Ok(Some(req)) => handler(req),
        Ok(None) => return Ok(()),
        Err(e) => Response::text(400, format!("{e}\n")),
    };
    write_response(stream, &resp)
}

fn read_request(reader: &mut impl BufRead, peer: SocketAddr) -> Result<Option<Request>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        bail!("malformed request line")
    };
    let mut headers = vec![];
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 {
            break;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
        if headers.len() > 100 {
            bail!("too many headers");
        }
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    if len > MAX_BODY {
        bail!("request body too large");
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body)?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Ok(Some(Request {
        method: method.to_string(),
        path: crate::util::percent_decode(path, false),
        query: crate::util::form_decode(query),
        headers,
        body,
        peer,
    }))
}

fn write_response(mut stream: impl Write, r: &Response) -> Result<()> {
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\nServer: maas-standin\r\n\r\n",
        r.status,
        reason(r.status),
        r.content_type,
        r.body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(&r.body)?;
    stream.flush()?;
    Ok(())
}

/// A URL split into what the client needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// Host (name or address).
    pub host: String,
    /// Port (80, or 443 for https, if absent).
    pub port: u16,
    /// Path, starting with `/`.
    pub path: String,
    /// `https://`.
    pub tls: bool,
}

/// Parses an `http://` or `https://` URL.
pub fn parse_url(url: &str) -> Result<Url> {
    let (rest, tls) = if let Some(r) = url.strip_prefix("http://") {
        (r, false)
    } else if let Some(r) = url.strip_prefix("https://") {
        (r, true)
    } else {
        bail!("only http:// and https:// URLs are supported by the MAAS stand-in: {url}");
    };
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || hostport.starts_with('[') => (
            h.trim_matches(|c| c == '[' || c == ']').to_string(),
            p.parse().context("bad port in URL")?,
        ),
        _ => (hostport.to_string(), if tls { 443 } else { 80 }),
    };
    if host.is_empty() {
        bail!("no host in URL {url}");
    }
    Ok(Url {
        host,
        port,
        path: path.to_string(),
        tls,
    })
}

/// A response as the client sees it.
#[derive(Debug, Clone)]
pub struct ClientResponse {
    /// Status code.
    pub status: u16,
    /// Body as text.
    pub body: String,
}

/// Sends one request and reads the whole response (https: verified against the system's CAs).
pub fn request(
    method: &str,
    url: &str,
    headers: &[(&str, String)],
    body: Option<(&str, Vec<u8>)>,
    timeout: Duration,
) -> Result<ClientResponse> {
    request_verified(method, url, headers, body, timeout, None)
}

/// The TLS side of an https request: the server's certificate must chain to `cacerts` (or the
/// system's CAs) and name the URL's host, as Python's default context checks it.
fn tls_stream(
    tcp: TcpStream,
    host: &str,
    cacerts: Option<&std::path::Path>,
) -> Result<openssl::ssl::SslStream<TcpStream>> {
    use openssl::ssl::{SslConnector, SslMethod};
    let mut b = SslConnector::builder(SslMethod::tls_client())?;
    match cacerts {
        Some(f) => b
            .set_ca_file(f)
            .with_context(|| format!("reading the CA file {}", f.display()))?,
        None => b.set_default_verify_paths()?,
    }
    let connector = b.build();
    let mut cfg = connector.configure()?;
    if host.parse::<std::net::IpAddr>().is_ok() {
        // SNI carries names only; the address is still checked against the certificate.
        cfg.set_use_server_name_indication(false);
    }
    cfg.connect(host, tcp)
        .map_err(|e| anyhow!("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: {e}"))
}

/// [`request`], with https verified against `cacerts` when given.
pub fn request_verified(
    method: &str,
    url: &str,
    headers: &[(&str, String)],
    body: Option<(&str, Vec<u8>)>,
    timeout: Duration,
    cacerts: Option<&std::path::Path>,
) -> Result<ClientResponse> {
    let u = parse_url(url)?;
    let addrs: Vec<_> = (u.host.as_str(), u.port)
        .to_socket_addrs()
        .with_context(|| format!("resolving {}", u.host))?
        .collect();
    // `localhost` may resolve to ::1 first while a server listens on IPv4 only: try each.
    let mut last_err = anyhow!("no address for {}", u.host);
    let mut stream = None;
    for addr in &addrs {
        match TcpStream::connect_timeout(addr, timeout) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => {
                last_err = anyhow::Error::new(e).context(format!("connecting to {url} ({addr})"))
            }
        }
    }
    let tcp = stream.ok_or(last_err)?;
    tcp.set_read_timeout(Some(timeout))?;
    tcp.set_write_timeout(Some(timeout))?;
    let mut s: Box<dyn ReadWrite> = if u.tls {
        Box::new(tls_stream(tcp, &u.host, cacerts)?)
    } else {
        Box::new(tcp)
    };
    let mut req = format!(
        "{method} {} HTTP/1.1\r\nHost: {}:{}\r\nConnection: close\r\nUser-Agent: maas-standin\r\n",
        u.path, u.host, u.port
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    let body_bytes = match &body {
        Some((ct, b)) => {
            req.push_str(&format!(
                "Content-Type: {ct}\r\nContent-Length: {}\r\n",
                b.len()
            ));
            b.clone()
        }
        None => {
            if method != "GET" {
                req.push_str("Content-Length: 0\r\n");
            }
            vec![]
        }
    };
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    s.write_all(&body_bytes)?;
    let mut raw = vec![];
    if let Err(e) = s.read_to_end(&mut raw) {
        // nginx may close a TLS connection without close_notify once the body is sent.
        if raw.is_empty() || !u.tls {
            return Err(anyhow::Error::new(e).context(format!("reading the response from {url}")));
        }
    }
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("malformed HTTP response from {url}"))?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("malformed HTTP status line from {url}"))?;
    let mut body = body.to_string();
    if let Some(len) = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())
            .flatten()
    }) {
        if body.len() > len {
            body.truncate(len);
        }
    }
    Ok(ClientResponse { status, body })
}

/// A plain or TLS connection.
trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("http://10.0.0.1:5240/MAAS/api/2.0/").unwrap(),
            Url {
                host: "10.0.0.1".into(),
                port: 5240,
                path: "/MAAS/api/2.0/".into(),
                tls: false,
            }
        );
        assert_eq!(parse_url("http://vip/MAAS").unwrap().port, 80);
        let u = parse_url("https://x/MAAS").unwrap();
        assert_eq!((u.port, u.tls), (443, true));
        assert!(parse_url("ftp://x/").is_err());
    }

    #[test]
    fn server_and_client_talk() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let h: Handler = Arc::new(|r: Request| {
            Response::json(
                200,
                &serde_json::json!({"path": r.path, "a": r.param("a"), "m": r.method}),
            )
        });
        std::thread::spawn(move || serve(l, h));
        let r = request(
            "POST",
            &format!("http://127.0.0.1:{port}/x%20y?q=1"),
            &[],
            Some(("application/x-www-form-urlencoded", b"a=b%26c".to_vec())),
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(r.status, 200);
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["path"], "/x y");
        assert_eq!(v["a"], "b&c");
        assert_eq!(v["m"], "POST");
    }
}
