//! `mcp-policy`: validate and explain MCP tool policies, render the Envoy and
//! Istio configuration that runs them. Exit codes: 0 success (explain: the
//! call is forwarded), 1 usage error or invalid policy, 2 (explain) the call
//! is refused or held for approval.

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

use lexopt::prelude::*;
use mcp_policy_cli::canonical;
use mcp_policy_cli::explain::{self, Call, SystemClock};
use mcp_policy_cli::policy_file::{self, PolicyFile};
use mcp_policy_cli::render::{self, EnvoyOptions, HeaderMode, IstioOptions};
use mcp_policy_engine::json;
use mcp_policy_engine::lint::lint;
use mcp_policy_engine::policy::{self as pol, Risk};
use mcp_policy_engine::Policy;

const USAGE: &str = "\
mcp-policy: check MCP tool policies and render the configuration that enforces them

usage:
  mcp-policy validate FILE [--strict]
      Print every problem in a policy file (JSON or YAML), exactly as the
      filter reports it; exit 1 if there is any. Warnings (lines starting
      with warning:) do not stop the filter from loading the policy; exit 0
      unless --strict is given.
  mcp-policy explain FILE --tool NAME [--args JSON] [--grant G] [--session S]
                          [--source ADDR] [--server-risk read|write|execute|destructive]
                          [--claims JSON] [--principal URI]
      What the filter does with one tools/call: allowed (exit 0), or denied,
      rate limited, needs approval (exit 2); the rule, the reason, the limits.
      --claims and --principal stand for the verified caller (caller.* paths).
  mcp-policy render envoy FILE [--wasm PATH] [--upstream HOST:PORT]
                               [--listen IP:PORT] [--port N] [--admin-port N]
                               [--header-mode hold|stream] [--runtime v8|null|wamr|wasmtime]
      A complete Envoy bootstrap YAML with the policy embedded. The module
      path is written absolute (relative to the current directory); the
      listener binds 127.0.0.1:10000 unless --listen (or --port) says otherwise.
  mcp-policy render istio FILE [--image URL] [--name NAME] [--namespace NS]
                               [--selector KEY=VALUE] [--port N] [--pull-secret NAME]
                               [--only wasmplugin|envoyfilter]
      An Istio WasmPlugin and, after ---, the EnvoyFilter variant, checking
      the inbound MCP port N (the server's container port, default 8000).

  mcp-policy render --canonical FILE
      The policy as the filter understands it, written in today's vocabulary
      (JSON): every accepted dialect (PolicyLayer's all_tools, rate_limit,
      tool-level require/deny_if, any-case risk names) comes out in one form;
      loading the output gives the same policy.

FILE is JSON or YAML (by extension, else by content); - reads standard input.
exit codes: 0 ok / allowed, 1 usage error or invalid policy, 2 refused (explain)
";

/// How the command ended.
enum Exit {
    Ok,
    /// Invalid policy or usage: message already printed.
    Fail,
    /// explain: refused or held.
    Refused,
}

fn main() -> ExitCode {
    let code = match run() {
        Ok(Exit::Ok) => 0,
        Ok(Exit::Fail) => 1,
        Ok(Exit::Refused) => 2,
        Err(message) => {
            eprintln!("mcp-policy: {message}");
            eprintln!("run `mcp-policy --help` for usage");
            1
        }
    };
    ExitCode::from(code)
}

fn arg_err(e: lexopt::Error) -> String {
    e.to_string()
}

fn string(value: OsString, what: &str) -> Result<String, String> {
    value
        .into_string()
        .map_err(|_| format!("{what}: not valid UTF-8"))
}

fn number<T: std::str::FromStr>(value: OsString, what: &str) -> Result<T, String> {
    let text = string(value, what)?;
    text.parse()
        .map_err(|_| format!("{what}: got {text:?}, expected a number"))
}

fn run() -> Result<Exit, String> {
    let mut parser = lexopt::Parser::from_env();
    let command = match parser.next().map_err(arg_err)? {
        Some(Value(v)) => string(v, "command")?,
        Some(Long("help")) | Some(Short('h')) | None => {
            print!("{USAGE}");
            return Ok(Exit::Ok);
        }
        Some(Long("version")) | Some(Short('V')) => {
            println!("mcp-policy {}", env!("CARGO_PKG_VERSION"));
            return Ok(Exit::Ok);
        }
        Some(other) => return Err(other.unexpected().to_string()),
    };
    match command.as_str() {
        "validate" => validate(&mut parser),
        "explain" => explain_cmd(&mut parser),
        "render" => {
            let target = match parser.next().map_err(arg_err)? {
                Some(Value(v)) => string(v, "render target")?,
                Some(Long("canonical")) => return render_canonical(&mut parser),
                _ => return Err("render: expected `envoy`, `istio` or `--canonical`".to_string()),
            };
            match target.as_str() {
                "envoy" => render_envoy(&mut parser),
                "istio" => render_istio(&mut parser),
                other => Err(format!(
                    "render: unknown target {other:?}, expected `envoy` or `istio`"
                )),
            }
        }
        "help" => {
            print!("{USAGE}");
            Ok(Exit::Ok)
        }
        other => Err(format!("unknown command {other:?}")),
    }
}

/// Reads and loads the policy; on problems prints them (to stdout for
/// `validate`, whose output they are; to stderr otherwise).
fn load(
    name: &str,
    problems_to_stdout: bool,
) -> Result<Result<(PolicyFile, Policy), Exit>, String> {
    let file = policy_file::read(name).map_err(|e| e.to_string())?;
    match file.load() {
        Ok(policy) => Ok(Ok((file, policy))),
        Err(errors) => {
            let mut lines = String::new();
            for e in &errors {
                lines.push_str(&format!("{e}\n"));
            }
            if problems_to_stdout {
                print!("{lines}");
                let _ = std::io::stdout().flush();
            } else {
                eprint!("{lines}");
            }
            eprintln!(
                "{name}: {} problem(s); the filter would refuse this policy",
                errors.len()
            );
            Ok(Err(Exit::Fail))
        }
    }
}

fn validate(parser: &mut lexopt::Parser) -> Result<Exit, String> {
    let mut file = None;
    let mut strict = false;
    while let Some(arg) = parser.next().map_err(arg_err)? {
        match arg {
            Value(v) if file.is_none() => file = Some(string(v, "FILE")?),
            Long("strict") => strict = true,
            Long("help") | Short('h') => {
                print!("{USAGE}");
                return Ok(Exit::Ok);
            }
            other => return Err(other.unexpected().to_string()),
        }
    }
    let name = file.ok_or("validate: expected a policy FILE")?;
    match load(&name, true)? {
        Ok((file, policy)) => {
            println!(
                "{name}: valid {} policy ({})",
                file.format.name(),
                policy_file::summary(&policy)
            );
            if let Some(order) = policy_file::pattern_order(&policy) {
                println!("{order}");
            }
            let warnings = lint(&policy);
            for w in &warnings {
                println!("warning: {w}");
            }
            if warnings.is_empty() {
                return Ok(Exit::Ok);
            }
            let _ = std::io::stdout().flush();
            if strict {
                eprintln!(
                    "{name}: {} warning(s); failing because of --strict (the filter would load this policy)",
                    warnings.len()
                );
                Ok(Exit::Fail)
            } else {
                eprintln!(
                    "{name}: {} warning(s); the filter loads this policy and logs them",
                    warnings.len()
                );
                Ok(Exit::Ok)
            }
        }
        Err(exit) => Ok(exit),
    }
}

fn parse_risk(text: &str) -> Result<Risk, String> {
    Risk::ALL
        .iter()
        .find(|(name, _)| *name == text)
        .map(|(_, r)| *r)
        .ok_or_else(|| {
            format!("--server-risk: got {text:?}, expected read, write, execute or destructive")
        })
}

fn explain_cmd(parser: &mut lexopt::Parser) -> Result<Exit, String> {
    let mut file = None;
    let mut call = Call::default();
    let mut tool = None;
    while let Some(arg) = parser.next().map_err(arg_err)? {
        match arg {
            Value(v) if file.is_none() => file = Some(string(v, "FILE")?),
            Long("tool") => tool = Some(string(parser.value().map_err(arg_err)?, "--tool")?),
            Long("args") => call.args = Some(string(parser.value().map_err(arg_err)?, "--args")?),
            Long("grant") => {
                call.grant = Some(string(parser.value().map_err(arg_err)?, "--grant")?)
            }
            Long("session") => {
                call.session = Some(string(parser.value().map_err(arg_err)?, "--session")?)
            }
            Long("source") => {
                call.source = Some(string(parser.value().map_err(arg_err)?, "--source")?)
            }
            Long("claims") => {
                call.claims = Some(string(parser.value().map_err(arg_err)?, "--claims")?)
            }
            Long("principal") => {
                call.principal = Some(string(parser.value().map_err(arg_err)?, "--principal")?)
            }
            Long("server-risk") => {
                let text = string(parser.value().map_err(arg_err)?, "--server-risk")?;
                call.server_risk = Some(parse_risk(&text)?);
            }
            Long("help") | Short('h') => {
                print!("{USAGE}");
                return Ok(Exit::Ok);
            }
            other => return Err(other.unexpected().to_string()),
        }
    }
    let name = file.ok_or("explain: expected a policy FILE")?;
    call.tool = tool.ok_or("explain: --tool NAME is required")?;
    if let Some(args) = &call.args {
        if let Err(e) = json::parse(args.as_bytes()) {
            return Err(format!("--args: not valid JSON: {e}"));
        }
    }
    if let Some(claims) = &call.claims {
        match json::parse(claims.as_bytes()) {
            Ok(doc) if doc.root.as_object().is_some() => {}
            Ok(_) => return Err("--claims: expected a JSON object of claims".to_string()),
            Err(e) => return Err(format!("--claims: not valid JSON: {e}")),
        }
    }
    let (_, policy) = match load(&name, false)? {
        Ok(loaded) => loaded,
        Err(exit) => return Ok(exit),
    };
    let explanation = explain::explain(&policy, &call, &SystemClock)?;
    print!("{}", explanation.to_text());
    Ok(match explanation.decision.exit_code() {
        0 => Exit::Ok,
        2 => Exit::Refused,
        _ => Exit::Fail,
    })
}

/// `render --canonical FILE`: the loaded policy in today's vocabulary.
fn render_canonical(parser: &mut lexopt::Parser) -> Result<Exit, String> {
    let mut file = None;
    while let Some(arg) = parser.next().map_err(arg_err)? {
        match arg {
            Value(v) if file.is_none() => file = Some(string(v, "FILE")?),
            Long("help") | Short('h') => {
                print!("{USAGE}");
                return Ok(Exit::Ok);
            }
            other => return Err(other.unexpected().to_string()),
        }
    }
    let name = file.ok_or("render --canonical: expected a policy FILE")?;
    let (_, policy) = match load(&name, false)? {
        Ok(loaded) => loaded,
        Err(exit) => return Ok(exit),
    };
    print!("{}", canonical::render(&policy)?);
    Ok(Exit::Ok)
}

fn render_envoy(parser: &mut lexopt::Parser) -> Result<Exit, String> {
    let mut file = None;
    let mut o = EnvoyOptions::default();
    while let Some(arg) = parser.next().map_err(arg_err)? {
        match arg {
            Value(v) if file.is_none() => file = Some(string(v, "FILE")?),
            Long("wasm") => o.wasm = string(parser.value().map_err(arg_err)?, "--wasm")?,
            Long("upstream") => {
                let text = string(parser.value().map_err(arg_err)?, "--upstream")?;
                (o.upstream_host, o.upstream_port) = render::parse_host_port(&text)?;
            }
            Long("listen") => {
                let text = string(parser.value().map_err(arg_err)?, "--listen")?;
                (o.listen_address, o.listen_port) = render::parse_listen(&text)?;
            }
            Long("runtime") => {
                let text = string(parser.value().map_err(arg_err)?, "--runtime")?;
                if !matches!(text.as_str(), "v8" | "null" | "wamr" | "wasmtime" | "wavm") {
                    return Err(format!(
                        "--runtime: got {text:?}, expected v8, null, wamr or wasmtime"
                    ));
                }
                o.runtime = text;
            }
            Long("port") => o.listen_port = number(parser.value().map_err(arg_err)?, "--port")?,
            Long("admin-port") => {
                o.admin_port = number(parser.value().map_err(arg_err)?, "--admin-port")?
            }
            Long("header-mode") => {
                let text = string(parser.value().map_err(arg_err)?, "--header-mode")?;
                o.header_mode = match text.as_str() {
                    "hold" => HeaderMode::Hold,
                    "stream" => HeaderMode::Stream,
                    _ => {
                        return Err(format!(
                            "--header-mode: got {text:?}, expected hold or stream"
                        ))
                    }
                };
            }
            Long("help") | Short('h') => {
                print!("{USAGE}");
                return Ok(Exit::Ok);
            }
            other => return Err(other.unexpected().to_string()),
        }
    }
    let name = file.ok_or("render envoy: expected a policy FILE")?;
    if o.wasm.is_empty() || o.wasm.contains('\n') {
        return Err("--wasm: expected a file path".to_string());
    }
    // Envoy opens the module relative to its own working directory: write
    // the path absolute so the config works wherever Envoy starts.
    o.wasm = std::path::absolute(&o.wasm)
        .map_err(|e| format!("--wasm: {e}"))?
        .to_str()
        .ok_or("--wasm: not valid UTF-8")?
        .to_string();
    // Port 0: the kernel chooses (tests read the port back from /listeners).
    if o.listen_port != 0 && o.listen_port == o.admin_port {
        return Err("--port and --admin-port must differ".to_string());
    }
    let (file, _) = match load(&name, false)? {
        Ok(loaded) => loaded,
        Err(exit) => return Ok(exit),
    };
    let text = file.text().ok_or("policy is not UTF-8")?;
    o.source = name;
    print!("{}", render::envoy(text, &o));
    Ok(Exit::Ok)
}

fn render_istio(parser: &mut lexopt::Parser) -> Result<Exit, String> {
    let mut file = None;
    let mut o = IstioOptions::default();
    let mut only: Option<String> = None;
    while let Some(arg) = parser.next().map_err(arg_err)? {
        match arg {
            Value(v) if file.is_none() => file = Some(string(v, "FILE")?),
            Long("image") => o.image = string(parser.value().map_err(arg_err)?, "--image")?,
            Long("name") => o.name = string(parser.value().map_err(arg_err)?, "--name")?,
            Long("namespace") => {
                o.namespace = Some(string(parser.value().map_err(arg_err)?, "--namespace")?)
            }
            Long("selector") => {
                let text = string(parser.value().map_err(arg_err)?, "--selector")?;
                let (k, v) = text
                    .split_once('=')
                    .filter(|(k, _)| !k.is_empty())
                    .ok_or_else(|| format!("--selector: got {text:?}, expected KEY=VALUE"))?;
                o.selector = (k.to_string(), v.to_string());
            }
            Long("port") => {
                let text = string(parser.value().map_err(arg_err)?, "--port")?;
                o.port = text
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| format!("--port: got {text:?}, expected 1-65535"))?;
            }
            Long("pull-secret") => {
                o.pull_secret = Some(string(parser.value().map_err(arg_err)?, "--pull-secret")?)
            }
            Long("only") => {
                let text = string(parser.value().map_err(arg_err)?, "--only")?;
                if text != "wasmplugin" && text != "envoyfilter" {
                    return Err(format!(
                        "--only: got {text:?}, expected wasmplugin or envoyfilter"
                    ));
                }
                only = Some(text);
            }
            Long("help") | Short('h') => {
                print!("{USAGE}");
                return Ok(Exit::Ok);
            }
            other => return Err(other.unexpected().to_string()),
        }
    }
    let name = file.ok_or("render istio: expected a policy FILE")?;
    let is_name = |s: &str| {
        !s.is_empty()
            && s.len() <= 63
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
    };
    if !is_name(&o.name)
        || !o.namespace.as_deref().is_none_or(is_name)
        || !o.pull_secret.as_deref().is_none_or(is_name)
    {
        return Err(
            "--name/--namespace/--pull-secret: expected a Kubernetes name (lowercase letters, digits, '-', '.')"
                .to_string(),
        );
    }
    // OCI repository names are lowercase; the tag or digest may not be.
    if let Some(reference) = o.image.strip_prefix("oci://") {
        let repository = reference
            .split_once('@')
            .map_or(reference, |(r, _)| r)
            .rsplit_once(':')
            .filter(|(_, tag)| !tag.contains('/'))
            .map_or(reference, |(r, _)| r);
        if repository.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(format!(
                "--image: got {:?}: an OCI repository name must be lowercase ({:?})",
                o.image,
                repository.to_ascii_lowercase()
            ));
        }
    }
    if !["oci://", "https://", "http://", "file://"]
        .iter()
        .any(|p| o.image.starts_with(p))
        || o.image.chars().any(char::is_whitespace)
    {
        return Err(format!(
            "--image: got {:?}, expected an oci://, https:// or file:// URL",
            o.image
        ));
    }
    let (file, policy) = match load(&name, false)? {
        Ok(loaded) => loaded,
        Err(exit) => return Ok(exit),
    };
    let text = file.text().ok_or("policy is not UTF-8")?;
    let doc = json::parse(text.as_bytes()).map_err(|e| e.to_string())?;
    o.command = match &only {
        Some(o) => format!("mcp-policy render istio {name} --only {o}"),
        None => format!("mcp-policy render istio {name}"),
    };
    let want_plugin = only.as_deref() != Some("envoyfilter");
    let want_filter = only.as_deref() != Some("wasmplugin");
    if want_plugin && policy.settings.header_mode == pol::HeaderMode::Hold {
        eprintln!(
            "policy.settings.header_mode: \"hold\" needs allow_on_headers_stop_iteration, which a WasmPlugin cannot set (requests would hang); remove it from the policy (the EnvoyFilter sets \"hold\" itself) or render only the EnvoyFilter with --only envoyfilter"
        );
        return Ok(Exit::Fail);
    }
    let mut out = String::new();
    if want_plugin {
        out.push_str(&render::wasm_plugin(&doc.root, doc.source, &o));
    }
    if want_plugin && want_filter {
        out.push_str("---\n");
    }
    if want_filter {
        out.push_str(&render::envoy_filter(text, &o));
    }
    print!("{out}");
    Ok(Exit::Ok)
}
