//! Who may connect: without a password every connection is let in (the default, for a
//! server on the loopback address); with one (`--password`, `WEIR_PASSWORD`) every
//! connection must prove it knows it with SCRAM-SHA-256, as PostgreSQL's `scram-sha-256`
//! authentication does, whatever its user name. The password never crosses the wire.
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
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

use super::handler::Startup;
use super::settings;

/// The server's password, kept only as SCRAM's salted hash.
#[derive(Clone)]
pub struct SharedPassword {
    salt: Vec<u8>,
    salted: Vec<u8>,
}

impl Debug for SharedPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedPassword(..)")
    }
}

impl SharedPassword {
    pub fn new(password: &str) -> Self {
        // A salt only has to differ between servers and starts, not be secret.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let mut salt = now.to_le_bytes().to_vec();
        salt.extend_from_slice(&std::process::id().to_le_bytes());
        let salted = gen_salted_password(password, &salt, SCRAM_ITERATIONS);
        Self { salt, salted }
    }
}

#[async_trait]
impl AuthSource for SharedPassword {
    async fn get_password(&self, _login: &LoginInfo) -> PgWireResult<Password> {
        Ok(Password::new(Some(self.salt.clone()), self.salted.clone()))
    }
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
    /// SCRAM-SHA-256 against the server's password.
    Password(Box<SASLAuthStartupHandler<Parameters>>),
}

impl Login {
    /// The login of a new connection.
    pub fn new(
        open: &Arc<Startup>,
        password: Option<&Arc<SharedPassword>>,
        connections: &Arc<ConnectionManager>,
    ) -> Self {
        match password {
            None => Login::Open(open.clone()),
            Some(password) => {
                let scram = ScramAuth::new(password.clone());
                let handler = SASLAuthStartupHandler::new(Arc::new(Parameters::new()))
                    .with_scram(scram)
                    .with_connection_manager(connections.clone());
                Login::Password(Box::new(handler))
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
            Login::Password(handler) => {
                handler.on_startup(client, message).await?;
                if matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
                    // Logged in: the startup parameters become the connection's settings.
                    settings::remember_startup(client.metadata_mut());
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_kept_only_salted() {
        let a = SharedPassword::new("pencil");
        assert_ne!(a.salted, b"pencil".to_vec());
        assert_eq!(
            a.salted,
            gen_salted_password("pencil", &a.salt, SCRAM_ITERATIONS)
        );
        assert!(!format!("{a:?}").contains("pencil"));
    }
}
