//! The `imgorigin` command: parses the CLI, maps outcomes to exit codes. Nothing else.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "imgorigin",
    version,
    about = "Image origin server: resize and transcode on the fly, behind CloudFront or any CDN"
)]
struct Cli {
    /// Configuration file (TOML). `IMGORIGIN__SECTION__KEY` environment variables override it.
    #[arg(long, global = true, default_value = "config.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Run only the ingest consumer (`[ingest]`, SPEC §12): no HTTP listener, for a
    /// worker-only deployment.
    Ingest,
    /// Validate the configuration and print a summary; exit 2 when invalid.
    CheckConfig,
    /// Print a CloudFront-signed URL, signed with `cloudfront.signing_key_file`
    /// (canned policy; custom policy when --policy-ip or --resource is given).
    SignUrl {
        /// The full viewer URL, e.g. https://images.example.com/private/alice/a.jpg?w=400
        url: String,
        /// Seconds from now until the URL expires.
        #[arg(long)]
        expires_in: u64,
        /// Only viewers from this IPv4/IPv6 CIDR may use the URL.
        #[arg(long)]
        policy_ip: Option<String>,
        /// Resource pattern with `*` / `?` wildcards (default: the URL itself).
        #[arg(long)]
        resource: Option<String>,
    },
    /// Print a token for `[auth.local]` (creates the key file on first use).
    Token {
        /// The identity (`sub`), e.g. alice; private/alice/... becomes readable.
        #[arg(long)]
        sub: String,
        /// Comma-separated groups (a group in admin.groups makes an admin).
        #[arg(long)]
        groups: Option<String>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        expires_in: u64,
    },
    /// Local accounts for signing in to the gallery (`[auth.local]`), kept in the metadata
    /// store (argon2id hashes).
    User {
        #[command(subcommand)]
        action: UserCommand,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add an account; the password is asked on the terminal (twice).
    Add {
        /// Lowercase letters, digits, `.`, `_`, `-`; the identity in keys (private/NAME/…).
        name: String,
        /// Read the password from the first line of standard input instead.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a new password for an account.
    Passwd {
        name: String,
        /// Read the password from the first line of standard input instead.
        #[arg(long)]
        password_stdin: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // An explicitly named config must exist; the default may be absent (all defaults).
    let explicit = std::env::args().any(|a| a == "--config" || a.starts_with("--config="));
    let config = match imgorigin::config::Config::load(&cli.config, explicit) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::CheckConfig => {
            println!("configuration OK ({})", cli.config.display());
            println!("  listen          {}", config.server.listen);
            println!("  metrics_listen  {}", config.server.metrics_listen);
            println!("  storage         {:?}", config.storage);
            println!(
                "  metadata        {}",
                redact_password(&config.metadata_url)
            );
            println!(
                "  workers         {} (+{} queued)",
                config.limits.transform_concurrency, config.limits.transform_queue
            );
            for w in &config.warnings {
                println!("warning: {w}");
            }
            ExitCode::SUCCESS
        }
        Command::SignUrl {
            url,
            expires_in,
            policy_ip,
            resource,
        } => match sign_url(&config, &url, expires_in, policy_ip, resource) {
            Ok(signed) => {
                println!("{signed}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        },
        Command::Token {
            sub,
            groups,
            expires_in,
        } => {
            let Some(local) = &config.auth.local else {
                eprintln!("[auth.local] is not configured (see config.toml)");
                return ExitCode::from(2);
            };
            let groups: Vec<String> = groups
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|g| !g.is_empty())
                .map(String::from)
                .collect();
            let minted =
                imgorigin::auth::local::LocalIssuer::load_or_create(&local.key_file, &local.issuer)
                    .and_then(|i| {
                        i.mint(&sub, &groups, std::time::Duration::from_secs(expires_in))
                    });
            match minted {
                Ok(t) => {
                    println!("{t}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("auth.local.key_file: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::User { action } => {
            let (name, from_stdin, replace) = match action {
                UserCommand::Add {
                    name,
                    password_stdin,
                } => (name, password_stdin, false),
                UserCommand::Passwd {
                    name,
                    password_stdin,
                } => (name, password_stdin, true),
            };
            match user_command(&config, &name, from_stdin, replace) {
                Ok(()) => {
                    println!(
                        "{} `{name}`",
                        if replace {
                            "password changed for"
                        } else {
                            "added user"
                        }
                    );
                    ExitCode::SUCCESS
                }
                Err((code, e)) => {
                    eprintln!("{e}");
                    ExitCode::from(code)
                }
            }
        }
        command @ (Command::Serve | Command::Ingest) => {
            fix_malloc_mmap_threshold();
            imgorigin::telemetry::init_logging(&config.log);
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let run = async {
                match command {
                    Command::Ingest => imgorigin::app::run_ingest(config).await,
                    _ => imgorigin::app::run(config).await,
                }
            };
            match rt.block_on(run) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn sign_url(
    config: &imgorigin::config::Config,
    url: &str,
    expires_in: u64,
    policy_ip: Option<String>,
    resource: Option<String>,
) -> Result<String, String> {
    let (key_file, key_pair_id) = config.auth.signing.as_ref().ok_or(
        "cloudfront.signing_key_file and cloudfront.signing_key_pair_id are not configured",
    )?;
    let pem = std::fs::read_to_string(key_file).map_err(|e| {
        format!(
            "cloudfront.signing_key_file: cannot read {}: {e}",
            key_file.display()
        )
    })?;
    let signer = imgorigin::auth::cloudfront::UrlSigner::from_pem(&pem, key_pair_id)
        .map_err(|e| format!("cloudfront.signing_key_file: {e}"))?;
    if let Some(ip) = &policy_ip
        && imgorigin::auth::cloudfront::cidr_contains(ip, std::net::Ipv4Addr::LOCALHOST.into())
            .is_none()
    {
        return Err(format!("--policy-ip: `{ip}` is not an IPv4/IPv6 CIDR"));
    }
    let expires = imgorigin::unix_now() + expires_in;
    Ok(if policy_ip.is_some() || resource.is_some() {
        signer.sign_custom(
            url,
            resource.as_deref(),
            expires,
            None,
            policy_ip.as_deref(),
        )
    } else {
        signer.sign_canned(url, expires)
    })
}

/// `user add|passwd`: the password from stdin or the terminal, then into the metadata
/// store (migrations applied). Errors: 2 for usage and config, 1 for the store.
fn user_command(
    config: &imgorigin::config::Config,
    name: &str,
    from_stdin: bool,
    replace: bool,
) -> Result<(), (u8, String)> {
    if config.auth.local.is_none() {
        return Err((2, "[auth.local] is not configured (see config.toml)".into()));
    }
    imgorigin::auth::password::check_name(name).map_err(|e| (2, e))?;
    let password = if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| (2, format!("cannot read the password from stdin: {e}")))?;
        line.trim_end_matches(['\n', '\r']).to_string()
    } else {
        let prompt = |p: &str| {
            rpassword::prompt_password(p).map_err(|e| {
                (
                    2,
                    format!(
                        "cannot read the password from the terminal ({e}); use --password-stdin"
                    ),
                )
            })
        };
        let first = prompt(&format!("password for {name}: "))?;
        imgorigin::auth::password::check_new_password(&first).map_err(|e| (2, e))?;
        if prompt("again: ")? != first {
            return Err((2, "the passwords differ".into()));
        }
        first
    };
    imgorigin::auth::password::check_new_password(&password).map_err(|e| (2, e))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| (1, format!("cannot start the runtime: {e}")))?;
    rt.block_on(async {
        let store = imgorigin::metadata::open(&config.metadata_url)
            .await
            .map_err(|e| (1, format!("metadata.url: {e}")))?;
        imgorigin::auth::password::save_user(store.as_ref(), name, &password, replace)
            .await
            .map_err(|e| (1, e))
    })
}

/// `scheme://user:password@host/…` with the password replaced, for printing.
fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}{tail}")
        }
        _ => url.to_string(),
    }
}

/// glibc malloc raises its mmap threshold after each large free (up to 32 MiB), so pixel
/// buffers of a few MiB end up in its arenas, between long-lived cache entries, and are
/// not returned: the process grew by ~40 MB per heavy run (scripts/bench, memory phase).
/// A fixed 1 MiB threshold maps every large buffer on its own and unmaps it on free; the
/// idle RSS then stayed within ~35 MiB of what the caches hold, run after run. (A
/// periodic malloc_trim, jemalloc and mimalloc were measured too: all kept more memory.)
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)] // one FFI call into glibc, see SAFETY below
fn fix_malloc_mmap_threshold() {
    // An operator's own setting (glibc reads it at start-up) wins.
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_some() {
        return;
    }
    // SAFETY: mallopt only changes a malloc tunable; it is called before any other thread
    // exists.
    let ok = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20) };
    if ok != 1 {
        eprintln!("note: mallopt(M_MMAP_THRESHOLD) was refused; memory may creep");
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn fix_malloc_mmap_threshold() {}
