//! Who is connected right now: one entry per logged-in client and per open
//! server connection, for the admin console's SHOW CLIENTS / SHOW SERVERS
//! and the wait times in SHOW POOLS.
//!
//! Entries are written by the task that owns the connection with relaxed
//! stores on its own cache line, once per server checkout and checkin;
//! only the console reads across them, so the forwarding path never waits
//! on the registry.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use dashmap::DashMap;
use pgvigil_insight::SessionInfo;

use crate::clock::MonoTime;
use crate::ids::{ClientId, ServerId};

/// Microseconds since the Unix epoch, the unit entries store times in.
pub(crate) fn now_us() -> u64 {
    unix_us(MonoTime::now())
}

/// A monotonic reading as Unix microseconds. The hot path already reads
/// the monotonic clock; converting it against one reading of the wall
/// clock taken at start saves a second clock call per checkout.
pub(crate) fn unix_us(at: MonoTime) -> u64 {
    static EPOCH: OnceLock<(MonoTime, u64)> = OnceLock::new();
    let (base, base_us) = *EPOCH.get_or_init(|| {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        (MonoTime::now(), wall)
    });
    if at >= base {
        base_us + at.micros_since(base)
    } else {
        base_us.saturating_sub(base.micros_since(at))
    }
}

#[derive(Default)]
pub struct Registry {
    clients: DashMap<ClientId, Arc<ClientEntry>>,
    servers: DashMap<ServerId, Arc<ServerEntry>>,
}

/// What a client is doing, in PgBouncer's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    /// Logged in; linked to a server or between requests.
    Active,
    /// Asked for a server connection and has none yet.
    Waiting,
}

/// What a server connection is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    /// Checked out by a client.
    Active,
    /// In the pool, ready for the next client.
    Idle,
}

pub struct ClientEntry {
    pub id: ClientId,
    /// Database, user, application_name and address at login, shared
    /// with the session's recorder.
    pub who: Arc<SessionInfo>,
    /// The client's port; its address is `who.client_addr`.
    pub port: u16,
    pub local_addr: Option<Endpoint>,
    pub connect_time_us: u64,
    /// The console's own sessions are listed but never wait for servers.
    pub console: bool,
    state: AtomicU8,
    link: AtomicU64,
    request_time_us: AtomicU64,
    wait_since_us: AtomicU64,
    /// Why a transaction-mode client keeps its server connection, if it
    /// does (bit per `PinReason`, see `client::session_state`).
    pinned: AtomicU8,
}

/// A socket address without IPv6 flow information and scope: 20 bytes
/// where `SocketAddr` takes 32, and every connected client's entry
/// carries one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    pub ip: IpAddr,
    pub port: u16,
}

impl From<SocketAddr> for Endpoint {
    fn from(a: SocketAddr) -> Endpoint {
        Endpoint {
            ip: a.ip(),
            port: a.port(),
        }
    }
}

pub struct ServerEntry {
    pub id: ServerId,
    pub database: String,
    pub user: String,
    pub addr: String,
    pub port: u16,
    pub local_addr: Option<SocketAddr>,
    pub connect_time_us: u64,
    pub remote_pid: i32,
    state: AtomicU8,
    link: AtomicU64,
    request_time_us: AtomicU64,
}

impl ClientEntry {
    pub fn state(&self) -> ClientState {
        match self.state.load(Ordering::Relaxed) {
            1 => ClientState::Waiting,
            _ => ClientState::Active,
        }
    }

    /// The server this client holds, if any.
    pub fn link(&self) -> Option<ServerId> {
        match self.link.load(Ordering::Relaxed) {
            0 => None,
            id => Some(ServerId(id)),
        }
    }

    pub fn request_time_us(&self) -> u64 {
        self.request_time_us.load(Ordering::Relaxed)
    }

    /// Since when the client has been waiting, while it waits.
    pub fn wait_since_us(&self) -> Option<u64> {
        (self.state() == ClientState::Waiting).then(|| self.wait_since_us.load(Ordering::Relaxed))
    }

    /// The pin reasons' bits, 0 when not pinned.
    pub fn pinned_bits(&self) -> u8 {
        self.pinned.load(Ordering::Relaxed)
    }

    pub(crate) fn set_pinned_bits(&self, bits: u8) {
        self.pinned.store(bits, Ordering::Relaxed);
    }

    /// A request that got its server at once: SHOW CLIENTS' request_time.
    pub(crate) fn request_started(&self, now_us: u64) {
        self.request_time_us.store(now_us, Ordering::Relaxed);
    }

    pub(crate) fn start_waiting(&self, now_us: u64) {
        self.request_time_us.store(now_us, Ordering::Relaxed);
        self.wait_since_us.store(now_us, Ordering::Relaxed);
        self.state.store(1, Ordering::Relaxed);
    }

    pub(crate) fn linked(&self, server: Option<ServerId>) {
        self.link
            .store(server.map_or(0, |s| s.0), Ordering::Relaxed);
        self.state.store(0, Ordering::Relaxed);
    }
}

impl ServerEntry {
    pub fn state(&self) -> ServerState {
        match self.state.load(Ordering::Relaxed) {
            1 => ServerState::Active,
            _ => ServerState::Idle,
        }
    }

    /// The client holding this connection, if any.
    pub fn link(&self) -> Option<ClientId> {
        match self.link.load(Ordering::Relaxed) {
            0 => None,
            id => Some(ClientId(id)),
        }
    }

    pub fn request_time_us(&self) -> u64 {
        self.request_time_us.load(Ordering::Relaxed)
    }

    pub(crate) fn checked_out(&self, client: Option<ClientId>, now_us: u64) {
        self.link
            .store(client.map_or(0, |c| c.0), Ordering::Relaxed);
        self.request_time_us.store(now_us, Ordering::Relaxed);
        self.state.store(1, Ordering::Relaxed);
    }

    pub(crate) fn checked_in(&self) {
        self.link.store(0, Ordering::Relaxed);
        self.state.store(0, Ordering::Relaxed);
    }
}

/// The facts about a client fixed at login.
pub(crate) struct NewClient {
    pub id: ClientId,
    /// Holds the client's address; its port comes with it.
    pub who: Arc<SessionInfo>,
    pub port: u16,
    pub local_addr: Option<SocketAddr>,
    pub console: bool,
}

/// The facts about a server connection fixed at login.
pub(crate) struct NewServer {
    pub id: ServerId,
    pub database: String,
    pub user: String,
    pub addr: String,
    pub port: u16,
    pub local_addr: Option<SocketAddr>,
    pub remote_pid: i32,
}

impl Registry {
    pub(crate) fn add_client(self: &Arc<Self>, c: NewClient) -> ClientRegistration {
        let now = now_us();
        let entry = Arc::new(ClientEntry {
            id: c.id,
            who: c.who,
            port: c.port,
            local_addr: c.local_addr.map(Endpoint::from),
            connect_time_us: now,
            console: c.console,
            state: AtomicU8::new(0),
            link: AtomicU64::new(0),
            request_time_us: AtomicU64::new(now),
            wait_since_us: AtomicU64::new(0),
            pinned: AtomicU8::new(0),
        });
        self.clients.insert(c.id, entry.clone());
        ClientRegistration {
            entry,
            registry: self.clone(),
        }
    }

    pub(crate) fn add_server(self: &Arc<Self>, s: NewServer) -> ServerRegistration {
        let now = now_us();
        let entry = Arc::new(ServerEntry {
            id: s.id,
            database: s.database,
            user: s.user,
            addr: s.addr,
            port: s.port,
            local_addr: s.local_addr,
            connect_time_us: now,
            remote_pid: s.remote_pid,
            state: AtomicU8::new(0),
            link: AtomicU64::new(0),
            request_time_us: AtomicU64::new(now),
        });
        self.servers.insert(s.id, entry.clone());
        ServerRegistration {
            entry,
            registry: self.clone(),
        }
    }

    /// Every logged-in client, oldest first.
    pub fn clients(&self) -> Vec<Arc<ClientEntry>> {
        let mut all: Vec<_> = self.clients.iter().map(|e| e.value().clone()).collect();
        all.sort_by_key(|c| c.id.0);
        all
    }

    /// Every open server connection, oldest first.
    pub fn servers(&self) -> Vec<Arc<ServerEntry>> {
        let mut all: Vec<_> = self.servers.iter().map(|e| e.value().clone()).collect();
        all.sort_by_key(|s| s.id.0);
        all
    }
}

/// Keeps a client listed while it lives; dropping it unlists the client
/// on every way out of a session.
pub(crate) struct ClientRegistration {
    pub(crate) entry: Arc<ClientEntry>,
    registry: Arc<Registry>,
}

impl Drop for ClientRegistration {
    fn drop(&mut self) {
        self.registry.clients.remove(&self.entry.id);
    }
}

/// Keeps a server connection listed while it is open.
pub(crate) struct ServerRegistration {
    pub(crate) entry: Arc<ServerEntry>,
    registry: Arc<Registry>,
}

impl Drop for ServerRegistration {
    fn drop(&mut self) {
        self.registry.servers.remove(&self.entry.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every connected client has an entry, in an `Arc`: with the Arc's
    /// two counts it takes the allocator's 112-byte class, and a field
    /// that grows it past that costs every client 16 bytes or more.
    #[test]
    fn a_client_entry_fits_the_allocators_112_byte_class() {
        let size = std::mem::size_of::<ClientEntry>() + 16;
        assert!(size <= 112, "ClientEntry takes {size} bytes in its Arc");
    }

    #[test]
    fn registrations_list_while_alive_and_unlist_when_dropped() {
        let registry = Arc::new(Registry::default());
        let client = registry.add_client(NewClient {
            id: ClientId(7),
            who: Arc::new(SessionInfo {
                database: "d".into(),
                user: "u".into(),
                application_name: "app".into(),
                client_addr: std::net::Ipv4Addr::LOCALHOST.into(),
            }),
            port: 5000,
            local_addr: None,
            console: false,
        });
        let server = registry.add_server(NewServer {
            id: ServerId(3),
            database: "d".into(),
            user: "u".into(),
            addr: "127.0.0.1".into(),
            port: 5432,
            local_addr: None,
            remote_pid: 99,
        });
        client.entry.start_waiting(10);
        assert_eq!(client.entry.state(), ClientState::Waiting);
        assert_eq!(client.entry.wait_since_us(), Some(10));
        server.entry.checked_out(Some(ClientId(7)), 11);
        client.entry.linked(Some(ServerId(3)));
        assert_eq!(client.entry.state(), ClientState::Active);
        assert_eq!(client.entry.link(), Some(ServerId(3)));
        assert_eq!(server.entry.link(), Some(ClientId(7)));
        assert_eq!(server.entry.state(), ServerState::Active);
        server.entry.checked_in();
        assert_eq!(server.entry.state(), ServerState::Idle);
        assert_eq!(registry.clients().len(), 1);
        assert_eq!(registry.servers().len(), 1);
        drop(client);
        drop(server);
        assert!(registry.clients().is_empty());
        assert!(registry.servers().is_empty());
    }
}
