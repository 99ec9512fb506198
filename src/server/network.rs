//! Network tuning: how the listener is bound and which options every accepted socket
//! gets. These use Linux socket options (`TCP_USER_TIMEOUT` among them), which is why
//! the hub builds for Linux only.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use tokio::net::TcpStream;

/// Pending connections the kernel queues before the hub accepts them (capped by
/// `net.core.somaxconn`).
const LISTEN_BACKLOG: i32 = 4096;
/// Kernel send buffer of each accepted socket (the kernel doubles it: 256 KiB).
const SOCKET_SEND_BUFFER: usize = 128 * 1024;
/// How long unacknowledged data may sit before the kernel drops the connection.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);
/// Idle time before the first keepalive probe, and the interval between probes.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);

/// Binds the listener with a backlog deep enough for bursts of connects (the standard
/// library's `bind` uses 128).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// Per-connection socket options, set as each connection is accepted: no Nagle delay
/// for small frames, and a kernel timeout that releases connections whose peer
/// stopped acknowledging data (a frozen client otherwise holds its socket and buffers
/// forever). Best effort: a socket that refuses an option is served anyway.
pub fn tune_socket(tcp: &TcpStream) {
    let socket = socket2::SockRef::from(tcp);
    let _ = socket.set_tcp_nodelay(true);
    // A fixed send buffer bounds the kernel memory a client that stops reading can
    // pin (autotuning lets it grow to tcp_wmem's 4 MiB); the kernel doubles it.
    let _ = socket.set_send_buffer_size(SOCKET_SEND_BUFFER);
    let _ = socket.set_tcp_user_timeout(Some(TCP_USER_TIMEOUT));
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL);
    let _ = socket.set_tcp_keepalive(&keepalive);
}
