//! Who may connect, and what they may do. Without a password or users every connection is
//! let in (the default, for a server on the loopback address). With a shared password
//! (`--password`, `WEIR_PASSWORD`) or named `[[users]]` in the config file, every connection
//! must prove it knows its password with SCRAM-SHA-256, as PostgreSQL's `scram-sha-256`
//! authentication does; the password never crosses the wire. A named user logs in with its
//! own password and role; any other user name with the shared password, as an admin.
//!
//! A `reader` may query and set its session, but the engine's DDL (CREATE/DROP SOURCE and
//! MATERIALIZED VIEW) is refused with SQLSTATE 42501 ([`may_run`]); the role is kept in the
//! connection's metadata under [`ROLE_KEY`].
//!
//! pgwire's SASL handler keeps each login's progress in itself, so the handlers' owner makes a
//! fresh [`Login`] for every connection.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::Sink;
use pgwire::api::auth::sasl::scram::{gen_salted_password, ScramAuth, SCRAM_ITERATIONS};
use pgwire::api::auth::sasl::SASLAuthStartupHandler;
use pgwire::api::auth::{
    AuthSource, DefaultServerParameterProvider, LoginInfo, Password, ServerParameterProvider,
    StartupHandler,
};
use pgwire::api::{ClientInfo, ConnectionManager, PgWireConnectionState};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

use super::handler::Startup;
use super::settings;
use crate::config::{Role, User};
use crate::plan::WeirStatement;

/// Where a connection's role is kept in its metadata: `reader`, or absent for an admin.
pub const ROLE_KEY: &str = "weir.role";

/// A password, kept only as SCRAM's salted hash.
#[derive(Clone)]
struct SaltedPassword {
    salt: Vec<u8>,
    salted: Vec<u8>,
}

impl SaltedPassword {
    fn new(password: &str, seed: usize) -> Self {
        // A salt only has to differ between users, servers and starts, not be secret.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let mut salt = now.to_le_bytes().to_vec();
        salt.extend_from_slice(&std::process::id().to_le_bytes());
        salt.extend_from_slice(&(seed as u64).to_le_bytes());
        let salted = gen_salted_password(password, &salt, SCRAM_ITERATIONS);
        Self { salt, salted }
    }

    fn password(&self) -> Password {
        Password::new(Some(self.salt.clone()), self.salted.clone())
    }
}

/// The passwords and roles logins are checked against.
pub struct Accounts {
    users: HashMap<String, (SaltedPassword, Role)>,
    shared: Option<SaltedPassword>,
    /// What a user name that is not listed is checked against when there is no shared
    /// password: a password nobody knows, so the login fails like a wrong password does
    /// (as PostgreSQL answers, not telling which user names exist).
    nobody: SaltedPassword,
}

impl Debug for Accounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accounts")
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .field("shared", &self.shared.is_some())
            .finish()
    }
}

impl Accounts {
    /// The accounts of a shared password and named users; None when there are neither and
    /// every connection is let in.
    pub fn new(shared: Option<&str>, users: &[User]) -> Option<Self> {
        if shared.is_none() && users.is_empty() {
            return None;
        }
        let nobody = unguessable();
        Some(Self {
            users: users
                .iter()
                .enumerate()
                .map(|(i, u)| {
                    let salted = SaltedPassword::new(u.password.expose(), i + 1);
                    (u.name.clone(), (salted, u.role))
                })
                .collect(),
            shared: shared.map(|p| SaltedPassword::new(p, 0)),
            nobody: SaltedPassword::new(&nobody, usize::MAX),
        })
    }

    /// The role of a logged-in user.
    fn role(&self, user: Option<&str>) -> Role {
        user.and_then(|u| self.users.get(u))
            .map_or(Role::Admin, |(_, role)| *role)
    }
}

#[async_trait]
impl AuthSource for Accounts {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        let named = login.user().and_then(|u| self.users.get(u));
        Ok(match (named, &self.shared) {
            (Some((salted, _)), _) => salted.password(),
            (None, Some(shared)) => shared.password(),
            (None, None) => self.nobody.password(),
        })
    }
}

/// A password no one can know: std's hash keys are 128 bits drawn from the OS's random source
/// (once per thread; each later `RandomState` varies them), and SipHash under them is
/// unpredictable without them.
fn unguessable() -> String {
    use std::hash::{BuildHasher, Hasher};
    (0..4)
        .map(|i| {
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            hasher.write_u32(i);
            format!("{:016x}", hasher.finish())
        })
        .collect()
}

/// Whether this connection may run `statement`: a `reader` may not change the catalog.
pub fn may_run<C: ClientInfo>(client: &C, statement: &WeirStatement) -> Result<(), Box<ErrorInfo>> {
    let reads = matches!(
        statement,
        WeirStatement::ShowSources | WeirStatement::ShowViews
    );
    if reads || client.metadata().get(ROLE_KEY).map(String::as_str) != Some("reader") {
        return Ok(());
    }
    let user = client
        .metadata()
        .get(pgwire::api::METADATA_USER)
        .cloned()
        .unwrap_or_default();
    let mut info = ErrorInfo::new(
        "ERROR".into(),
        "42501".into(),
        format!("permission denied: user \"{user}\" has the reader role, which may only query"),
    );
    info.hint = Some(
        "CREATE and DROP of sources and views need a user whose role is admin \
         ([[users]] in the config file)"
            .into(),
    );
    Err(Box::new(info))
}

/// What the server announces after a login: pgwire's defaults with Weir's `server_version`.
pub struct Parameters(DefaultServerParameterProvider);

impl Parameters {
    fn new() -> Self {
        let mut defaults = DefaultServerParameterProvider::default();
        defaults.server_version = settings::server_version();
        Self(defaults)
    }
}

impl ServerParameterProvider for Parameters {
    fn server_parameters<C>(&self, client: &C) -> Option<HashMap<String, String>>
    where
        C: ClientInfo,
    {
        self.0.server_parameters(client)
    }
}

/// One connection's login.
pub enum Login {
    /// No password is set: everyone is let in.
    Open(Arc<Startup>),
    /// SCRAM-SHA-256 against the user's password or the shared one.
    Password(Box<SASLAuthStartupHandler<Parameters>>, Arc<Accounts>),
}

impl Login {
    /// The login of a new connection.
    pub fn new(
        open: &Arc<Startup>,
        accounts: Option<&Arc<Accounts>>,
        connections: &Arc<ConnectionManager>,
    ) -> Self {
        match accounts {
            None => Login::Open(open.clone()),
            Some(accounts) => {
                let scram = ScramAuth::new(accounts.clone());
                let handler = SASLAuthStartupHandler::new(Arc::new(Parameters::new()))
                    .with_scram(scram)
                    .with_connection_manager(connections.clone());
                Login::Password(Box::new(handler), accounts.clone())
            }
        }
    }
}

#[async_trait]
impl StartupHandler for Login {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match self {
            Login::Open(open) => open.on_startup(client, message).await,
            Login::Password(handler, accounts) => {
                handler.on_startup(client, message).await?;
                if matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
                    // Logged in: the startup parameters become the connection's settings.
                    settings::remember_startup(client.metadata_mut());
                    let user = client.metadata().get(pgwire::api::METADATA_USER).cloned();
                    if accounts.role(user.as_deref()) == Role::Reader {
                        client
                            .metadata_mut()
                            .insert(ROLE_KEY.into(), "reader".into());
                    }
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, password: &str, role: Role) -> User {
        User {
            name: name.into(),
            password: password.parse().unwrap(),
            role,
        }
    }

    #[test]
    fn passwords_are_kept_only_salted() {
        let a = SaltedPassword::new("pencil", 0);
        assert_ne!(a.salted, b"pencil".to_vec());
        assert_eq!(
            a.salted,
            gen_salted_password("pencil", &a.salt, SCRAM_ITERATIONS)
        );
        let accounts = Accounts::new(Some("pencil"), &[user("g", "crayon", Role::Reader)]);
        let shown = format!("{accounts:?}");
        assert!(
            !shown.contains("pencil") && !shown.contains("crayon"),
            "{shown}"
        );
    }

    #[test]
    fn named_users_have_their_role_and_others_are_admins() {
        assert!(Accounts::new(None, &[]).is_none(), "open");
        let accounts = Accounts::new(None, &[user("grafana", "g", Role::Reader)]).unwrap();
        assert_eq!(accounts.role(Some("grafana")), Role::Reader);
        assert_eq!(accounts.role(Some("ops")), Role::Admin);
    }
}
