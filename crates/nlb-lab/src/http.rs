//! The HTTP/1.1 client of the labs: `GET /` to a server such as `nlb serve-http`, whose
//! answer names the host that served it.
//!
//! Call these from a thread inside the client's namespace ([`crate::segment::inside`]).
//! Connecting waits up to 3 s, so a SYN dropped in a hand-off is retried once by TCP
//! (after 1 s); reading waits up to 3 s.

use std::io::{BufRead, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// How long connecting and reading may take.
const TIMEOUT: Duration = Duration::from_secs(3);

/// A TCP connection from `src` (any port) to `dst`, with [`TIMEOUT`] for the connect and
/// for reads.
fn connect(src: Ipv4Addr, dst: SocketAddr) -> Result<TcpStream, (&'static str, std::io::Error)> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
        .map_err(|e| ("socket", e))?;
    socket
        .bind(&SocketAddr::from((src, 0)).into())
        .map_err(|e| ("bind", e))?;
    socket
        .connect_timeout(&dst.into(), TIMEOUT)
        .map_err(|e| ("connect from", e))?;
    let stream = TcpStream::from(socket);
    stream
        .set_read_timeout(Some(TIMEOUT))
        .map_err(|e| ("socket", e))?;
    Ok(stream)
}

/// One HTTP/1.1 request from `src` to `dst` on a connection of its own
/// (`Connection: close`): the last line of the answer, which names the host for
/// `nlb serve-http`. Errors say which step failed (`connect from 198.18.0.101: ...`).
pub fn http_get(src: Ipv4Addr, dst: SocketAddr) -> Result<String, String> {
    let mut stream = connect(src, dst).map_err(|(step, e)| match step {
        "socket" => e.to_string(),
        step => format!("{step} {src}: {e}"),
    })?;
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: vip\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("send from {src}: {e}"))?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| format!("read from {src}: {e}"))?;
    response
        .lines()
        .last()
        .map(str::to_owned)
        .ok_or_else(|| "empty answer".to_owned())
}

/// A kept-alive HTTP/1.1 connection: many requests, one after the other.
#[derive(Debug)]
pub struct KeepAlive {
    reader: std::io::BufReader<TcpStream>,
    writer: TcpStream,
}

impl KeepAlive {
    /// Connects from `src` to `dst` (with `TCP_NODELAY`, so that small requests go out
    /// at once).
    pub fn connect(src: Ipv4Addr, dst: SocketAddr) -> std::io::Result<KeepAlive> {
        let writer = connect(src, dst).map_err(|(_, e)| e)?;
        writer.set_nodelay(true)?;
        let reader = std::io::BufReader::new(writer.try_clone()?);
        Ok(KeepAlive { reader, writer })
    }

    /// Closes the connection both ways: sends a FIN and reads until the server's (any
    /// bytes left before it are an error).
    pub fn close(mut self) -> std::io::Result<()> {
        self.writer.shutdown(std::net::Shutdown::Write)?;
        let mut rest = Vec::new();
        self.reader.read_to_end(&mut rest)?;
        if rest.is_empty() {
            Ok(())
        } else {
            Err(std::io::Error::other("bytes after the last answer"))
        }
    }

    /// One request on the connection: the body of the answer (the host's name). A
    /// connection the server closed is an `UnexpectedEof` error.
    pub fn get(&mut self) -> std::io::Result<String> {
        self.writer
            .write_all(b"GET / HTTP/1.1\r\nHost: vip\r\n\r\n")?;
        let mut length = 0;
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "connection closed by the server",
                ));
            }
            if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = value.trim().parse().unwrap_or(0);
            }
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body)?;
        Ok(String::from_utf8_lossy(&body).trim().to_owned())
    }
}
