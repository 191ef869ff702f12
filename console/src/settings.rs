//! The console's settings (flags, environment variables and config keys of `serve`).

use crate::oidc;
use crate::session::Limits;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// Sign a console session out after this long without a request.
    #[arg(
        long = "console-session-idle",
        env = "PORTCULLIS_CONSOLE_SESSION_IDLE",
        default_value = "30m",
        value_parser = humantime::parse_duration
    )]
    pub session_idle: Duration,
    /// Sign a console session out this long after sign-in, however busy.
    #[arg(
        long = "console-session-lifetime",
        env = "PORTCULLIS_CONSOLE_SESSION_LIFETIME",
        default_value = "12h",
        value_parser = humantime::parse_duration
    )]
    pub session_lifetime: Duration,
    /// How many console sessions the server holds; past it a sign-in ends the least recently
    /// used one.
    #[arg(
        long = "console-max-sessions",
        env = "PORTCULLIS_CONSOLE_MAX_SESSIONS",
        default_value_t = 10_000,
        value_parser = clap::value_parser!(u32).range(1..=1_000_000)
    )]
    pub max_sessions: u32,
    /// Boxed: `serve`'s settings are one variant of the command enum, kept small.
    #[command(flatten)]
    pub provider: Box<ProviderSettings>,
}

/// Sign-in with the company's identity provider over OpenID Connect: off unless
/// `--console-oidc-issuer` is set, and then the client id, secret file and public URL must be
/// set too.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ProviderSettings {
    /// The OpenID Connect issuer the console signs people in with (its discovery document is
    /// read from `<issuer>/.well-known/openid-configuration`); https, or http on loopback only.
    #[arg(long = "console-oidc-issuer", env = "PORTCULLIS_CONSOLE_OIDC_ISSUER")]
    pub issuer: Option<String>,
    /// The console's client id at the identity provider.
    #[arg(
        long = "console-oidc-client-id",
        env = "PORTCULLIS_CONSOLE_OIDC_CLIENT_ID"
    )]
    pub client_id: Option<String>,
    /// A file holding the console's client secret at the identity provider (read at start;
    /// never give the secret itself on the command line).
    #[arg(
        long = "console-oidc-client-secret-file",
        env = "PORTCULLIS_CONSOLE_OIDC_CLIENT_SECRET_FILE"
    )]
    pub client_secret_file: Option<PathBuf>,
    /// The console's address as browsers reach it (`https://portcullis.example.com`): the
    /// identity provider sends people back to `<public url>/console/sign-in/callback`, and
    /// webhook notifications link to `<public url>/console/approvals/<id>`.
    #[arg(long = "console-public-url", env = "PORTCULLIS_CONSOLE_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// The scopes the console asks the identity provider for (space-separated, with `openid`).
    #[arg(
        long = "console-oidc-scopes",
        env = "PORTCULLIS_CONSOLE_OIDC_SCOPES",
        default_value = "openid email"
    )]
    pub scopes: String,
    /// What the sign-in page calls the identity provider ("Sign in with …"); its host when unset.
    #[arg(long = "console-oidc-name", env = "PORTCULLIS_CONSOLE_OIDC_NAME")]
    pub name: Option<String>,
}

impl Settings {
    pub(crate) fn session_limits(&self) -> Limits {
        Limits {
            idle: self.session_idle,
            lifetime: self.session_lifetime,
            max: self.max_sessions as usize,
        }
    }

    /// The identity provider sign-in, checked and its client secret read: `None` when it is
    /// off. Half a configuration is an error that names what is missing.
    pub fn identity_provider(&self) -> Result<Option<oidc::Config>, oidc::ConfigError> {
        oidc::Config::from_settings(&self.provider)
    }

    /// The console's public origin (`--console-public-url`, checked, no trailing `/`), for
    /// links to it from elsewhere: `None` when it is not set.
    pub fn public_url(&self) -> Result<Option<String>, oidc::ConfigError> {
        oidc::public_url(&self.provider)
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            session_idle: Duration::from_secs(30 * 60),
            session_lifetime: Duration::from_secs(12 * 3600),
            max_sessions: 10_000,
            provider: Box::new(ProviderSettings {
                scopes: "openid email".into(),
                ..ProviderSettings::default()
            }),
        }
    }
}
