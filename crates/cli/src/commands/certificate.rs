//! `switchyard certificate set --env ENV NAME --cert FILE (--key-file F | --key-env VAR)`:
//! create or replace a `kind: Certificate` from PEM files, so that its private key never
//! has to sit in a manifest. The certificate is checked here (the key matches, the chain
//! verifies, it is valid now), then sent as one apply: one revision, audited, the key
//! sealed by the Manager and never printed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context;
use switchyard_api::admin::ApplyRequest;
use switchyard_config::manifest::{
    API_VERSION, CertificateManifest, CertificateSpec, ClientAuthMode, ClientAuthSpec, Manifest,
    json_text,
};
use switchyard_config::parse_str;
use switchyard_engine::tls;

use crate::batch;
use crate::commands::credential::read_secret;
use crate::conn::ConnArgs;
use crate::manager_error::Explain;

#[derive(clap::Subcommand)]
pub enum CertificateAction {
    /// Create or replace a certificate from PEM files (the same content changes nothing).
    #[command(after_help = "Examples:
  switchyard certificate set --env prod api --cert ./api.crt --key-file ./api.key
  vault read -field=key secret/tls/api | switchyard certificate set --env prod api --cert ./api.crt --key-file /dev/stdin

Workers that serve HTTPS pick it up hot: handshakes after their swap get the new certificate,
established connections carry on.")]
    Set(CertificateArgs),
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("key").required(true).args(["key_file", "key_env"])))]
pub struct CertificateArgs {
    /// The environment.
    #[arg(long)]
    pub env: String,
    /// The certificate's name (metadata.name).
    pub name: String,
    /// The PEM chain: the leaf first, then intermediates.
    #[arg(long, value_name = "FILE")]
    pub cert: PathBuf,
    /// Read the PEM private key from this file.
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// Read the PEM private key from this environment variable of this process.
    #[arg(long, value_name = "VAR")]
    pub key_env: Option<String>,
    /// Serve it for handshakes whose SNI no certificate covers.
    #[arg(long)]
    pub default: bool,
    /// Ask clients for a certificate and verify it against the CA bundle in this Credential
    /// (type `secret`): `spec.clientAuth.ca`. Without it, the certificate set has no
    /// client authentication (a replaced one loses its own).
    #[arg(long, value_name = "CREDENTIAL")]
    pub client_ca: Option<String>,
    /// With --client-ca: refuse clients without a certificate in the handshake
    /// (`spec.clientAuth.mode: required`) instead of leaving them to `mtls-auth` (401).
    #[arg(long, requires = "client_ca")]
    pub client_cert_required: bool,
    /// Only show what would change.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
}

pub async fn run(action: CertificateAction) -> anyhow::Result<ExitCode> {
    let CertificateAction::Set(args) = action;
    let certificate = std::fs::read_to_string(&args.cert)
        .with_context(|| format!("--cert: cannot read {}", args.cert.display()))?;
    let private_key = read_secret(args.key_file.as_deref(), args.key_env.as_deref(), "--key")?;
    let client_auth = args.client_ca.clone().map(|ca| ClientAuthSpec {
        ca,
        mode: if args.client_cert_required {
            ClientAuthMode::Required
        } else {
            ClientAuthMode::Optional
        },
    });
    let text = manifest_text(
        &args.name,
        certificate,
        private_key,
        args.default,
        client_auth,
    )?;
    check(&args.name, &text)?;
    let client = args.conn.client()?;
    let request = ApplyRequest {
        manifests: vec![text],
        expected_revision: None,
        dry_run: args.dry_run,
        delete: Vec::new(),
        canary: None,
    };
    let result = client.apply(&args.env, &request).await.explain()?;
    batch::print(&result, args.conn.output);
    Ok(batch::exit(&result))
}

/// The manifest as the Manager takes it (JSON is YAML).
fn manifest_text(
    name: &str,
    certificate: String,
    private_key: String,
    default: bool,
    client_auth: Option<ClientAuthSpec>,
) -> anyhow::Result<String> {
    let m = CertificateManifest {
        api_version: API_VERSION.into(),
        kind: "Certificate".into(),
        metadata: serde_json::from_value(serde_json::json!({ "name": name }))
            .context("the certificate's name")?,
        spec: CertificateSpec {
            certificate,
            private_key,
            default,
            client_auth,
        },
    };
    json_text::to_string(&m).context("cannot write the certificate manifest")
}

/// Refuses, before anything is sent, what the Manager would refuse; warns when it expires
/// soon. Messages name the field and never contain the key.
fn check(name: &str, text: &str) -> anyhow::Result<()> {
    let docs = parse_str(format!("certificate {name:?}").into(), text)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let [m] = docs.as_slice() else {
        anyhow::bail!("the certificate manifest did not read back as one document");
    };
    let Manifest::Certificate(c) = &m.value else {
        anyhow::bail!("the certificate manifest did not read back as a certificate");
    };
    let now = SystemTime::now();
    let mut errors: Vec<String> = match tls::compile(m, c) {
        Ok(_) => Vec::new(),
        Err(es) => es.iter().map(ToString::to_string).collect(),
    };
    errors.extend(tls::check_validity(m, now).iter().map(ToString::to_string));
    if !errors.is_empty() {
        anyhow::bail!("{}", errors.join("\n"));
    }
    if let Some(w) = tls::expiry_warning(m, now, tls::EXPIRY_WARNING) {
        eprintln!("warning: {w}");
    }
    Ok(())
}
