//! The console's settings (flags, environment variables and config keys of `serve`).

use crate::session::Limits;
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
}

impl Settings {
    pub(crate) fn session_limits(&self) -> Limits {
        Limits {
            idle: self.session_idle,
            lifetime: self.session_lifetime,
            max: self.max_sessions as usize,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            session_idle: Duration::from_secs(30 * 60),
            session_lifetime: Duration::from_secs(12 * 3600),
            max_sessions: 10_000,
        }
    }
}
