//! `nlb serve-http`: a tiny HTTP/1.1 server that answers every request with its name.
//! It is the service behind the VIP in the end-to-end tests and the lab. It binds with
//! `IP_FREEBIND`, so it can start before the daemon adds the VIP.

use crate::CliError;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Address and port to listen on, such as 198.18.0.10:80.
    #[arg(long)]
    bind: SocketAddr,
    /// What to answer.
    #[arg(long)]
    name: String,
}

fn serve(stream: TcpStream, name: &str) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    loop {
        let mut request = String::new();
        if reader.read_line(&mut request)? == 0 {
            return Ok(());
        }
        let mut close = false;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header)? == 0 {
                return Ok(());
            }
            if header.to_ascii_lowercase().starts_with("connection: close") {
                close = true;
            }
            if header == "\r\n" || header == "\n" {
                break;
            }
        }
        let body = format!("{name}\n");
        // One write per response: several small writes meet Nagle's algorithm and the
        // client's delayed ACK, and every request then takes 40 ms.
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{}\r\n{body}",
            body.len(),
            if close { "Connection: close\r\n" } else { "" }
        );
        writer.write_all(response.as_bytes())?;
        if close {
            return Ok(());
        }
    }
}

pub(crate) fn run(args: &Args) -> Result<(), CliError> {
    let domain = socket2::Domain::for_address(args.bind);
    let listener = (|| {
        let socket = socket2::Socket::new(domain, socket2::Type::STREAM, None)?;
        socket.set_reuse_address(true)?;
        socket.set_freebind_v4(true)?;
        socket.bind(&args.bind.into())?;
        socket.listen(1024)?;
        Ok::<_, std::io::Error>(std::net::TcpListener::from(socket))
    })()
    .map_err(|err| CliError::failed(format!("cannot listen on {}: {err}", args.bind)))?;
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let name = args.name.clone();
        std::thread::spawn(move || {
            let _ = serve(stream, &name);
        });
    }
    Ok(())
}
