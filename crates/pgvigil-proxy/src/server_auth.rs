//! What pgvigil may prove itself to PostgreSQL with, and which of
//! PostgreSQL's authentication requests it is willing to answer
//! (`server_require_auth`, libpq's `require_auth`). Socket-free; the
//! login conversation is `ServerConn::login`.

use crate::scram::{ScramKeys, ScramVerifier, StoredPassword};

/// A pool's credential for logging in to PostgreSQL.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Credential {
    /// No password configured: only trust (AuthenticationOk) can work.
    #[default]
    None,
    Plain(String),
    /// md5(password || user): answers md5 challenges, nothing else.
    Md5Hash([u8; 16]),
    /// A SCRAM secret alone cannot log in; it waits for a client's SCRAM
    /// login to reveal the ClientKey (see `ServerPool::offer_scram_keys`).
    ScramSecret(ScramVerifier),
    ScramKeys(ScramKeys),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Credential::None => "None",
            Credential::Plain(_) => "Plain(<redacted>)",
            Credential::Md5Hash(_) => "Md5Hash(<redacted>)",
            Credential::ScramSecret(_) => "ScramSecret(<redacted>)",
            Credential::ScramKeys(_) => "ScramKeys(<redacted>)",
        })
    }
}

impl Credential {
    /// From a user's configured `password`, in any form `StoredPassword`
    /// accepts.
    pub fn from_config(password: Option<&str>) -> Credential {
        match password.map(StoredPassword::parse) {
            None => Credential::None,
            Some(StoredPassword::Plain(p)) => Credential::Plain(p),
            Some(StoredPassword::Md5(h)) => Credential::Md5Hash(h),
            Some(StoredPassword::Scram(v)) => Credential::ScramSecret(v),
        }
    }
}

/// An authentication method PostgreSQL may ask for, named as in libpq's
/// `require_auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// AuthenticationOk with no challenge (trust, peer...).
    None,
    /// Cleartext password.
    Password,
    Md5,
    ScramSha256,
}

impl AuthMethod {
    pub fn name(self) -> &'static str {
        match self {
            AuthMethod::None => "none",
            AuthMethod::Password => "password",
            AuthMethod::Md5 => "md5",
            AuthMethod::ScramSha256 => "scram-sha-256",
        }
    }

    fn from_name(name: &str) -> Option<AuthMethod> {
        [
            AuthMethod::None,
            AuthMethod::Password,
            AuthMethod::Md5,
            AuthMethod::ScramSha256,
        ]
        .into_iter()
        .find(|m| m.name() == name)
    }
}

/// Which authentication requests pgvigil answers when logging in to
/// PostgreSQL. A cleartext password over plain TCP is readable by anyone
/// on the path, and an md5 response can be replayed against the same salt
/// or brute-forced offline; SCRAM reveals nothing. So by default only
/// SCRAM is answered unless the leg is TLS, where all are.
///
/// AuthenticationOk without a challenge is allowed by default although
/// the default is "SCRAM only": a server that lets pgvigil in without
/// asking learns no secret, so refusing would only break trust setups.
/// An explicit list refuses it unless it names `none`, as libpq does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequireAuth {
    /// None: the default policy above. Some: exactly these methods, on
    /// any leg (the operator chose).
    explicit: Option<Vec<AuthMethod>>,
}

impl RequireAuth {
    /// Exactly `methods`, TLS or not.
    pub fn only(methods: &[AuthMethod]) -> RequireAuth {
        RequireAuth {
            explicit: Some(methods.to_vec()),
        }
    }

    /// libpq's syntax: `scram-sha-256,md5` allows those, `!password,!md5`
    /// allows all but those (no mixing). `gss` and `sspi` are accepted
    /// for compatibility; pgvigil cannot do them anyway. An empty string
    /// is the default policy.
    pub fn parse(list: &str) -> Result<RequireAuth, String> {
        let list = list.trim();
        if list.is_empty() {
            return Ok(RequireAuth::default());
        }
        let mut named = Vec::new();
        let mut negated = None;
        for word in list.split(',').map(str::trim) {
            let (neg, name) = match word.strip_prefix('!') {
                Some(n) => (true, n),
                None => (false, word),
            };
            if *negated.get_or_insert(neg) != neg {
                return Err(format!(
                    "negative and positive methods cannot be mixed in \"{list}\""
                ));
            }
            match AuthMethod::from_name(name) {
                Some(m) => named.push(m),
                None if matches!(name, "gss" | "sspi") => {}
                None => return Err(format!("unknown authentication method \"{name}\"")),
            }
        }
        let methods = if negated == Some(true) {
            [
                AuthMethod::None,
                AuthMethod::Password,
                AuthMethod::Md5,
                AuthMethod::ScramSha256,
            ]
            .into_iter()
            .filter(|m| !named.contains(m))
            .collect()
        } else {
            named
        };
        Ok(RequireAuth {
            explicit: Some(methods),
        })
    }

    pub fn allows(&self, method: AuthMethod, leg_is_tls: bool) -> bool {
        match &self.explicit {
            Some(methods) => methods.contains(&method),
            None => match method {
                AuthMethod::None | AuthMethod::ScramSha256 => true,
                AuthMethod::Password | AuthMethod::Md5 => leg_is_tls,
            },
        }
    }

    /// For messages: what the policy allows on this leg.
    pub fn describe(&self, leg_is_tls: bool) -> String {
        match &self.explicit {
            None if leg_is_tls => "default: any method over TLS".to_string(),
            None => "default: scram-sha-256 only without TLS".to_string(),
            Some(m) if m.is_empty() => "no method".to_string(),
            Some(m) => m.iter().map(|m| m.name()).collect::<Vec<_>>().join(","),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [AuthMethod; 4] = [
        AuthMethod::None,
        AuthMethod::Password,
        AuthMethod::Md5,
        AuthMethod::ScramSha256,
    ];

    fn allowed(policy: &RequireAuth, tls: bool) -> Vec<&'static str> {
        ALL.iter()
            .filter(|m| policy.allows(**m, tls))
            .map(|m| m.name())
            .collect()
    }

    #[test]
    fn default_policy_sends_no_password_in_the_clear() {
        let policy = RequireAuth::default();
        assert_eq!(allowed(&policy, false), ["none", "scram-sha-256"]);
        assert_eq!(
            allowed(&policy, true),
            ["none", "password", "md5", "scram-sha-256"]
        );
    }

    #[test]
    fn an_explicit_list_applies_on_any_leg_and_excludes_unlisted_none() {
        let policy = RequireAuth::parse("scram-sha-256, md5").unwrap();
        for tls in [false, true] {
            assert_eq!(allowed(&policy, tls), ["md5", "scram-sha-256"]);
        }
        let policy = RequireAuth::only(&[AuthMethod::Password]);
        assert_eq!(allowed(&policy, false), ["password"]);
    }

    #[test]
    fn negated_lists_allow_everything_else() {
        let policy = RequireAuth::parse("!password,!none").unwrap();
        assert_eq!(allowed(&policy, false), ["md5", "scram-sha-256"]);
        assert_eq!(
            RequireAuth::parse("!gss").map(|p| allowed(&p, false).len()),
            Ok(4)
        );
    }

    #[test]
    fn malformed_lists_are_errors_not_silently_permissive() {
        assert!(RequireAuth::parse("scram-sha-256,!md5").is_err());
        assert!(RequireAuth::parse("scram").is_err());
        assert_eq!(RequireAuth::parse(" "), Ok(RequireAuth::default()));
    }

    #[test]
    fn credential_follows_the_configured_form_and_hides_it() {
        let secret = postgres_protocol::password::scram_sha_256(b"pw");
        let md5 = postgres_protocol::password::md5(b"pw", "app");
        assert_eq!(Credential::from_config(None), Credential::None);
        assert_eq!(
            Credential::from_config(Some("pw")),
            Credential::Plain("pw".into())
        );
        assert!(matches!(
            Credential::from_config(Some(&md5)),
            Credential::Md5Hash(_)
        ));
        assert!(matches!(
            Credential::from_config(Some(&secret)),
            Credential::ScramSecret(_)
        ));
        for text in ["pw", md5.as_str(), secret.as_str()] {
            let shown = format!("{:?}", Credential::from_config(Some(text)));
            assert!(shown.ends_with("(<redacted>)"), "{shown}");
        }
    }
}
