//! `hookhost:hooks/email`: plain-text mail through the SMTP servers of the
//! configuration (`[mailers.<name>]`, with `lettre`), for the plugins
//! granted them (`mailers = [...]` in `[plugins.<name>]`). The mailer sets
//! the sender; the plugin sets recipients, subject and body.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use crate::bindings::hookhost::hooks::email::{EmailError, Message};
use crate::settings::Settings;
use crate::state::{EventEffects, PluginState};

/// Messages one event may send. An alert hook sends one per event, a hook
/// that tells a few teams separately a handful; ten leaves room for that
/// while a hook looping on `send` cannot turn one event into a mail flood
/// (or into ten seconds of SMTP sessions holding the worker).
pub const MAX_MESSAGES_PER_EVENT: u32 = 10;
/// Recipients (`to` and `cc` together) of one message. Team aliases and
/// on-call lists are a handful of addresses; 50 is far past that and far
/// under the thousands a mailing-list abuse would use (and under the 100
/// RCPT commands RFC 5321 requires servers to accept).
pub const MAX_RECIPIENTS_PER_MESSAGE: u32 = 50;
/// Recipients over all the messages of one event: two full messages'
/// worth, so splitting a long list into many messages does not get past
/// the per-message bound.
pub const MAX_RECIPIENTS_PER_EVENT: u32 = 100;
/// Bytes of subject and body of one message, together: 1 MiB, the cap of
/// an HTTP request body. A plain-text alert is a few KiB; many servers
/// refuse messages over 10 to 25 MiB, and the host would hold and encode
/// the whole message in memory before sending it.
pub const MAX_TEXT_BYTES: usize = 1 << 20;

/// How the connection to the SMTP server is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TlsMode {
    /// Plain text; only for a relay on the same machine or network.
    None,
    /// Plain text upgraded with STARTTLS (port 587 by default).
    StartTls,
    /// TLS from the first byte (port 465 by default).
    Tls,
}

/// The keys a `[mailers.<name>]` section may have.
const KEYS: &[&str] = &["host", "port", "tls", "username", "password", "from"];

/// One `[mailers.<name>]` section, resolved and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct MailerSpec {
    host: String,
    port: u16,
    tls: TlsMode,
    from: Mailbox,
    settings: Settings,
}

impl MailerSpec {
    /// Reads a `[mailers.<name>]` section: `host`, `port`, `tls` (`none`,
    /// `starttls` or `tls`; default `starttls`), `username` and `password`
    /// (usually `${NAME}` from the environment), and `from`.
    pub fn parse(settings: Settings) -> Result<MailerSpec, String> {
        if let Some(key) = settings.keys().find(|key| !KEYS.contains(key)) {
            return Err(format!(
                "unknown key `{key}`; expected one of {}",
                KEYS.join(", ")
            ));
        }
        let host = settings.text("host").ok_or("needs `host`")?.to_owned();
        let tls = match settings.text("tls").unwrap_or("starttls") {
            "none" => TlsMode::None,
            "starttls" => TlsMode::StartTls,
            "tls" => TlsMode::Tls,
            other => return Err(format!("tls `{other}` is not one of none, starttls, tls")),
        };
        let port = match settings.text("port") {
            Some(port) => port
                .parse()
                .map_err(|_| format!("port `{port}` is not a port number"))?,
            None => match tls {
                TlsMode::None => 25,
                TlsMode::StartTls => 587,
                TlsMode::Tls => 465,
            },
        };
        let from = settings
            .text("from")
            .ok_or("needs `from`, the sender address")?;
        let from = from
            .parse()
            .map_err(|err| format!("from `{from}` is not an address: {err}"))?;
        if settings.text("username").is_some() != settings.text("password").is_some() {
            return Err("give both `username` and `password`, or neither".to_owned());
        }
        Ok(MailerSpec {
            host,
            port,
            tls,
            from,
            settings,
        })
    }

    fn transport(
        &self,
        timeout: std::time::Duration,
    ) -> Result<AsyncSmtpTransport<Tokio1Executor>, EmailError> {
        let builder = match self.tls {
            TlsMode::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&self.host),
            TlsMode::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&self.host)
                .map_err(|err| EmailError::Unavailable(err.to_string()))?,
            TlsMode::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&self.host)
                .map_err(|err| EmailError::Unavailable(err.to_string()))?,
        };
        let mut builder = builder.port(self.port).timeout(Some(timeout));
        if let (Some(user), Some(password)) = (
            self.settings.text("username"),
            self.settings.text("password"),
        ) {
            builder = builder.credentials(Credentials::new(user.to_owned(), password.to_owned()));
        }
        Ok(builder.build())
    }
}

/// The mailers one plugin may use.
#[derive(Clone, Default)]
pub struct EmailAccess {
    granted: Arc<BTreeMap<String, MailerSpec>>,
}

impl EmailAccess {
    /// Access to the `granted` mailers.
    pub(crate) fn new(granted: BTreeMap<String, MailerSpec>) -> Self {
        EmailAccess {
            granted: Arc::new(granted),
        }
    }
}

/// Checks the sizes of `message` before anything is parsed or built from
/// it: at most [`MAX_RECIPIENTS_PER_MESSAGE`] recipients (`denied`, like
/// the other bounds on what a message may do) and [`MAX_TEXT_BYTES`] of
/// subject and body (`invalid`: the message itself is too big to send).
/// Returns the number of recipients.
fn check_sizes(plugin: &str, message: &Message) -> Result<u32, EmailError> {
    let recipients = message.to.len().saturating_add(message.cc.len());
    let recipients = u32::try_from(recipients).unwrap_or(u32::MAX);
    check_recipients(plugin, recipients)?;
    let text = message.subject.len().saturating_add(message.body.len());
    if text > MAX_TEXT_BYTES {
        return Err(EmailError::Invalid(format!(
            "subject and body take {text} bytes, over the cap of {MAX_TEXT_BYTES} bytes per \
             message; send a summary and link to the rest"
        )));
    }
    Ok(recipients)
}

/// Whether one message may go to `recipients` addresses.
fn check_recipients(plugin: &str, recipients: u32) -> Result<(), EmailError> {
    if recipients > MAX_RECIPIENTS_PER_MESSAGE {
        return Err(EmailError::Denied(format!(
            "a message to {recipients} recipients (to and cc) is over the bound of \
             {MAX_RECIPIENTS_PER_MESSAGE} per message; plugin {plugin} should send to a list \
             address instead, or split the recipients over several events"
        )));
    }
    Ok(())
}

/// The message as lettre builds it, or why it cannot be built.
fn build(from: &Mailbox, message: Message) -> Result<lettre::Message, EmailError> {
    let invalid =
        |what: &str, err: &dyn std::fmt::Display| EmailError::Invalid(format!("{what}: {err}"));
    if message.to.is_empty() {
        return Err(EmailError::Invalid("no recipient in `to`".to_owned()));
    }
    let mut builder = lettre::Message::builder()
        .from(from.clone())
        .subject(message.subject)
        .header(ContentType::TEXT_PLAIN);
    for to in &message.to {
        builder = builder.to(to
            .parse()
            .map_err(|err| invalid(&format!("recipient `{to}`"), &err))?);
    }
    for cc in &message.cc {
        builder = builder.cc(cc
            .parse()
            .map_err(|err| invalid(&format!("recipient `{cc}`"), &err))?);
    }
    builder
        .body(message.body)
        .map_err(|err| invalid("message", &err))
}

/// Counts one message to `recipients` addresses against the event's
/// bounds, or says which bound it would pass.
fn count(effects: &mut EventEffects, plugin: &str, recipients: u32) -> Result<(), EmailError> {
    check_recipients(plugin, recipients)?;
    if effects.emails >= MAX_MESSAGES_PER_EVENT {
        return Err(EmailError::Denied(format!(
            "plugin {plugin} has sent {MAX_MESSAGES_PER_EVENT} messages in this event, the \
             most one event may send; put more in each message, or send the rest in later \
             events"
        )));
    }
    let total = effects.email_recipients.saturating_add(recipients);
    if total > MAX_RECIPIENTS_PER_EVENT {
        return Err(EmailError::Denied(format!(
            "this message would bring the recipients of plugin {plugin}'s messages in this \
             event to {total}, over the bound of {MAX_RECIPIENTS_PER_EVENT} per event; send to \
             a list address, or send the rest in later events"
        )));
    }
    effects.emails += 1;
    effects.email_recipients = total;
    Ok(())
}

fn send_error(err: lettre::transport::smtp::Error) -> EmailError {
    if err.is_timeout() {
        EmailError::Timeout
    } else if err.is_permanent() {
        EmailError::Rejected(err.to_string())
    } else {
        EmailError::Unavailable(err.to_string())
    }
}

impl crate::bindings::hookhost::hooks::email::Host for PluginState {
    async fn send(&mut self, mailer: String, message: Message) -> Result<(), EmailError> {
        let plugin = &*self.plugin;
        let spec = self.email.granted.get(&mailer).ok_or_else(|| {
            EmailError::Denied(format!(
                "mailer `{mailer}` is not granted to plugin {plugin}; to grant it, define \
                 [mailers.{mailer}] and add \"{mailer}\" to mailers in [plugins.{plugin}]"
            ))
        })?;
        let recipients = check_sizes(plugin, &message)?;
        let message = build(&spec.from, message)?;
        count(&mut self.effects, plugin, recipients)?;
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(EmailError::Timeout);
        }
        let transport = spec.transport(left)?;
        tokio::time::timeout(left, transport.send(message))
            .await
            .map_err(|_| EmailError::Timeout)?
            .map(drop)
            .map_err(send_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denial(result: Result<(), EmailError>) -> String {
        match result {
            Err(EmailError::Denied(why)) => why,
            other => panic!("not denied: {other:?}"),
        }
    }

    #[test]
    fn each_bound_is_named_when_passed() {
        let mut effects = EventEffects::default();
        let why = denial(count(&mut effects, "p", MAX_RECIPIENTS_PER_MESSAGE + 1));
        assert!(why.contains("bound of 50 per message"), "{why}");
        assert_eq!(effects.emails, 0, "a refused message is not counted");
        for _ in 0..2 {
            count(&mut effects, "p", MAX_RECIPIENTS_PER_MESSAGE).unwrap();
        }
        let why = denial(count(&mut effects, "p", 1));
        assert!(
            why.contains("to 101, over the bound of 100 per event"),
            "{why}"
        );
        let mut effects = EventEffects::default();
        for _ in 0..MAX_MESSAGES_PER_EVENT {
            count(&mut effects, "p", 1).unwrap();
        }
        let why = denial(count(&mut effects, "p", 1));
        assert!(why.contains("has sent 10 messages in this event"), "{why}");
    }

    fn message(recipients: usize, body_bytes: usize) -> Message {
        Message {
            to: vec!["not an address".to_owned(); recipients],
            cc: Vec::new(),
            subject: "s".to_owned(),
            body: "x".repeat(body_bytes),
        }
    }

    #[test]
    fn sizes_are_checked_before_any_address_is_read() {
        let over = MAX_RECIPIENTS_PER_MESSAGE as usize + 1;
        let why = denial(check_sizes("p", &message(over, 1)).map(drop));
        assert!(why.contains("a message to 51 recipients"), "{why}");
        match check_sizes("p", &message(1, MAX_TEXT_BYTES)) {
            Err(EmailError::Invalid(why)) => assert!(
                why.starts_with("subject and body take 1048577 bytes, over the cap of 1048576"),
                "{why}"
            ),
            other => panic!("not refused: {other:?}"),
        }
        assert_eq!(
            check_sizes("p", &message(50, MAX_TEXT_BYTES - 1)).ok(),
            Some(50)
        );
    }
}
