//! `dcmon-exporter register`: enrols this host with a receiver. Generates a
//! new RSA key, proves possession by signing the registration, presents the
//! admin token once (it is never written on the host) and stores the key
//! and the receiver's answer in the state directory. Registering again
//! replaces the key.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use dcmon_protocol::identity::{self, KEY_BITS, RegisterRequest, RegisterResponse};
use rsa::RsaPrivateKey;

use super::{Enrollment, IdentityStore};
use crate::receiver_tls::{self, ReceiverTrust, SeenCertificate};

/// Default state directory.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/dcmon-exporter";

/// Flags of `dcmon-exporter register`.
#[derive(Debug, Clone, clap::Args)]
pub struct RegisterArgs {
    /// Receiver base URL, e.g. `https://dcmon.example:8000`.
    #[arg(long)]
    pub server: String,

    /// File holding the admin token. Without it the token is read from
    /// standard input (one line).
    #[arg(long = "admin-token-file", value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,

    /// Where the host key and enrollment are kept.
    #[arg(long = "state-dir", default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,

    /// Host name to register (the `instance` label of this host's samples).
    /// Default: the system's host name.
    #[arg(long)]
    pub hostname: Option<String>,

    /// File holding the machine id.
    #[arg(long = "machine-id-file", default_value = "/etc/machine-id")]
    pub machine_id_file: PathBuf,

    /// CA certificate(s), PEM, that an `https://` receiver's certificate
    /// must chain to (default: the system's roots). Remembered in the
    /// enrollment.
    #[arg(long = "server-ca-file", value_name = "FILE")]
    pub server_ca_file: Option<PathBuf>,

    /// Do not verify the receiver's certificate chain: trust the one it
    /// presents now, and pin it (for a self-signed receiver certificate).
    #[arg(long = "insecure-skip-verify")]
    pub insecure_skip_verify: bool,
}

/// Runs the registration; prints what happened.
pub fn run(args: &RegisterArgs) -> anyhow::Result<Enrollment> {
    // Checked first: a name the receiver would refuse fails before the
    // admin token is asked for and a key is generated.
    let hostname = match &args.hostname {
        Some(name) => name.clone(),
        None => nix::unistd::gethostname()
            .context("reading the host name")?
            .to_string_lossy()
            .into_owned(),
    };
    if let Err(why) = identity::check_hostname(&hostname) {
        bail!(
            "host name {:?} cannot be registered: {why}; pass --hostname with a name of dot-separated labels \
             (letters, digits and '-', 1-63 characters each, not starting or ending with '-')",
            hostname.chars().take(80).collect::<String>()
        );
    }
    let state = IdentityStore::open(&args.state_dir)?;
    let admin_token = read_admin_token(args)?;
    let machine_id = std::fs::read_to_string(&args.machine_id_file)
        .with_context(|| format!("reading {}", args.machine_id_file.display()))?
        .trim()
        .to_owned();
    eprintln!("Generating a {KEY_BITS}-bit RSA key for {hostname}...");
    let key = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, KEY_BITS)
        .context("generating the host key")?;
    let mut nonce = [0u8; 16];
    getrandom::fill(&mut nonce).context("no randomness for the nonce")?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_secs() as i64;
    let request = RegisterRequest::signed(
        &key,
        &hostname,
        &machine_id,
        now,
        &identity::hex(&nonce),
        env!("CARGO_PKG_VERSION"),
    )?;
    let server = args.server.trim_end_matches('/').to_owned();
    if args.insecure_skip_verify {
        tracing::warn!(
            "--insecure-skip-verify: the receiver's certificate chain is not checked; \
             whatever certificate it presents now is pinned"
        );
    }
    let trust = ReceiverTrust {
        ca_file: args.server_ca_file.clone(),
        insecure_skip_verify: args.insecure_skip_verify,
        pinned: None,
    };
    let seen = SeenCertificate::default();
    let tls = receiver_tls::client_config(&trust, seen.clone())?;
    let answer = send(&server, &admin_token, &request, tls)?;
    let (server_fingerprint, server_ca_fingerprint) = pins(&server, args, &seen)?;
    let enrollment = Enrollment {
        server,
        client_id: answer.client_id,
        instance: answer.instance,
        audience: answer.audience,
        server_fingerprint,
        server_ca_fingerprint,
        // Absolute: the service reads it from another working directory.
        server_ca_file: args
            .server_ca_file
            .as_deref()
            .map(std::path::absolute)
            .transpose()
            .context("resolving --server-ca-file")?,
    };
    state.save(&key, &enrollment)?;
    eprintln!(
        "{} {} as client {} with {}.\nKey and enrollment are in {}; start shipping with:\n  dcmon-exporter --state-dir {}",
        if answer.replaced {
            "Re-registered"
        } else {
            "Registered"
        },
        enrollment.instance,
        enrollment.client_id,
        enrollment.server,
        state.path().display(),
        state.path().display(),
    );
    Ok(enrollment)
}

/// What to pin of an `https://` receiver (nothing over http): the CA of
/// `--server-ca-file` its certificate chains to, else the certificate.
fn pins(
    server: &str,
    args: &RegisterArgs,
    seen: &SeenCertificate,
) -> anyhow::Result<(Option<String>, Option<String>)> {
    if !server.starts_with("https://") {
        return Ok((None, None));
    }
    if let (Some(ca_file), false) = (&args.server_ca_file, args.insecure_skip_verify) {
        let host = reqwest::Url::parse(server)
            .ok()
            .and_then(|url| url.host_str().map(str::to_owned))
            .unwrap_or_default();
        if let Some(ca) = seen.anchor(ca_file, &host)? {
            eprintln!("Pinned the receiver's CA, SHA-256 {ca}.");
            return Ok((None, Some(ca)));
        }
    }
    let certificate = seen.fingerprint();
    if let Some(fingerprint) = &certificate {
        eprintln!("Pinned the receiver's certificate, SHA-256 {fingerprint}.");
    }
    Ok((certificate, None))
}

fn read_admin_token(args: &RegisterArgs) -> anyhow::Result<String> {
    let token = match &args.admin_token_file {
        Some(file) => std::fs::read_to_string(file)
            .with_context(|| format!("reading the admin token from {}", file.display()))?,
        None => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                eprint!("Admin token: ");
                std::io::stderr().flush().ok();
            }
            let mut line = String::new();
            stdin
                .lock()
                .read_line(&mut line)
                .context("reading the admin token from standard input")?;
            line
        }
    };
    let token = token.trim().to_owned();
    if token.is_empty() {
        bail!("the admin token is empty");
    }
    Ok(token)
}

fn send(
    server: &str,
    admin_token: &str,
    request: &RegisterRequest,
    tls: rustls::ClientConfig,
) -> anyhow::Result<RegisterResponse> {
    let url = format!("{server}/api/dcmon/register");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("dcmon-exporter/", env!("CARGO_PKG_VERSION")))
            .tls_backend_preconfigured(tls)
            .build()
            .context("building the HTTP client")?;
        let response = client
            .post(&url)
            .bearer_auth(admin_token)
            .json(request)
            .send()
            .await
            .map_err(|err| {
                anyhow::anyhow!("sending the registration to {url}: {}", error_chain(&err))
            })?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        if !status.is_success() {
            // The receiver answers errors as Prometheus does: {"error": "..."}.
            let reason = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("error")?.as_str().map(str::to_owned))
                .unwrap_or(body);
            bail!("the receiver refused the registration ({status}): {reason}");
        }
        serde_json::from_str(&body).with_context(|| format!("parsing the answer of {url}"))
    })
}

/// An error with its causes: reqwest's `Display` leaves out the TLS reason
/// (an unknown CA, a changed certificate) that the operator needs.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
