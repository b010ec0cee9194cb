//! Look-alike identifiers kept apart by type: a cancel request carries the
//! key pgvigil gave the client, which must never be confused with the key
//! of the PostgreSQL backend serving it.

/// The (process id, secret) pair pgvigil hands a client in BackendKeyData.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey {
    pub process_id: i32,
    pub secret_key: i32,
}

/// The (process id, secret) pair a PostgreSQL backend sent pgvigil.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BackendKey {
    pub process_id: i32,
    pub secret_key: i32,
}

impl BackendKey {
    /// Packs into one word so the current backend of a client can be
    /// published with a single atomic store. PostgreSQL never uses process
    /// id 0, so 0 means "no backend".
    pub(crate) fn pack(self) -> u64 {
        ((self.process_id as u32 as u64) << 32) | self.secret_key as u32 as u64
    }

    pub(crate) fn unpack(word: u64) -> Option<BackendKey> {
        if word == 0 {
            return None;
        }
        Some(BackendKey {
            process_id: (word >> 32) as u32 as i32,
            secret_key: word as u32 as i32,
        })
    }
}

/// Identifies a server connection in logs and the admin console.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ServerId(pub u64);

impl std::fmt::Display for ServerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "S-{}", self.0)
    }
}

/// Identifies a client connection in logs and the admin console.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientId(pub u64);

impl std::fmt::Display for ClientId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "C-{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_key_survives_packing_including_negative_secrets() {
        let key = BackendKey {
            process_id: 4242,
            secret_key: -7,
        };
        assert_eq!(BackendKey::unpack(key.pack()), Some(key));
        assert_eq!(BackendKey::unpack(0), None);
    }
}
