//! rls-server: an Envoy rate limit service
//! (`envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`, gRPC)
//! counting in Redis, so several Envoy replicas running mcp-policy share one
//! budget per counter. Built for mcp-policy's tests and demos; see README.md
//! for the production services (envoyproxy/ratelimit, Limitador).
//!
//! Counting (src/limiter.rs): fixed windows aligned to the unit, the limit
//! taken from each descriptor's `limit` override, one atomic Lua script per
//! request that refuses without consuming.

mod limiter;
mod proto;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tonic::codegen::{http, Body, BoxFuture, Context, Poll, Service, StdError};
use tonic::{Request, Response, Status};

use limiter::Limit;
use proto::{RateLimitRequest, RateLimitResponse};

const METHOD_PATH: &str = "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit";
/// How long one request may wait for Redis before the service answers
/// UNAVAILABLE (the client has its own, usually shorter, timeout).
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

const USAGE: &str = "\
usage: rls-server [--port N] [--host ADDR] [--redis URL] [--default-limit N/UNIT]
                  [--key-prefix P] [--verbose]

Envoy rate limit service (envoy.service.ratelimit.v3.RateLimitService, gRPC
over cleartext HTTP/2) counting in Redis.

  --port N              listen port (default 8081; 0 = any free port)
  --host ADDR           listen address (default 127.0.0.1)
  --redis URL           Redis to count in (default redis://127.0.0.1:6379)
  --default-limit N/U   limit for descriptors without a `limit` override,
                        U one of second, minute, hour, day (default: none,
                        such descriptors are always OK)
  --key-prefix P        prefix of the Redis keys (default rls)
  --verbose             log every decision to stderr

Prints `rls-server listening on ADDR` once it accepts connections.";

struct Options {
    addr: SocketAddr,
    redis: String,
    default_limit: Option<Limit>,
    key_prefix: String,
    verbose: bool,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut host = "127.0.0.1".to_string();
    let mut port: u16 = 8081;
    let mut options = Options {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        redis: "redis://127.0.0.1:6379".into(),
        default_limit: None,
        key_prefix: "rls".into(),
        verbose: false,
    };
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |what: &str| {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{what} needs a value"))
        };
        match name.as_str() {
            "--port" => {
                let v = value("--port")?;
                port = v
                    .parse()
                    .map_err(|_| format!("--port: not a port: {v:?}"))?;
            }
            "--host" => host = value("--host")?,
            "--redis" => options.redis = value("--redis")?,
            "--default-limit" => {
                options.default_limit = Some(Limit::parse(&value("--default-limit")?)?)
            }
            "--key-prefix" => options.key_prefix = value("--key-prefix")?,
            "--verbose" | "-v" => options.verbose = true,
            "--help" | "-h" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let ip = host
        .parse()
        .map_err(|_| format!("--host: not an IP address: {host:?}"))?;
    options.addr = SocketAddr::new(ip, port);
    Ok(options)
}

/// The Redis connection, opened on first use and reopened after an error.
struct Redis {
    client: redis::Client,
    connection: tokio::sync::Mutex<Option<redis::aio::MultiplexedConnection>>,
    up: AtomicBool,
}

impl Redis {
    async fn connection(&self) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
        let mut slot = self.connection.lock().await;
        if let Some(con) = slot.as_ref() {
            return Ok(con.clone());
        }
        let con = self.client.get_multiplexed_async_connection().await?;
        *slot = Some(con.clone());
        Ok(con)
    }

    async fn forget(&self) {
        *self.connection.lock().await = None;
    }
}

struct RateLimiter {
    redis: Redis,
    default_limit: Option<Limit>,
    key_prefix: String,
    verbose: bool,
}

impl RateLimiter {
    async fn should_rate_limit(
        &self,
        request: RateLimitRequest,
    ) -> Result<RateLimitResponse, Status> {
        let planned =
            limiter::plan(&self.key_prefix, &request, self.default_limit).map_err(|why| {
                if self.verbose {
                    eprintln!("rls-server: invalid request: {why}");
                }
                Status::invalid_argument(why)
            })?;
        let attempt = async {
            let mut con = self.redis.connection().await?;
            limiter::decide(&mut con, &planned).await
        };
        let outcome = match tokio::time::timeout(REDIS_TIMEOUT, attempt).await {
            Ok(outcome) => outcome.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no answer within {REDIS_TIMEOUT:?}")),
        };
        match outcome {
            Ok((overall, statuses)) => {
                if !self.redis.up.swap(true, Ordering::Relaxed) {
                    eprintln!("rls-server: redis is up");
                }
                if self.verbose {
                    let keys: Vec<String> = planned
                        .iter()
                        .zip(&statuses)
                        .map(|(p, s)| match p {
                            Some(p) => format!(
                                "{} {}/{:?} remaining {}",
                                p.key, p.limit.requests, p.limit.unit, s.limit_remaining
                            ),
                            None => "(no limit)".into(),
                        })
                        .collect();
                    eprintln!("rls-server: {:?} {}", overall, keys.join(", "));
                }
                Ok(RateLimitResponse {
                    overall_code: overall as i32,
                    statuses,
                })
            }
            Err(why) => {
                if self.redis.up.swap(false, Ordering::Relaxed) || self.verbose {
                    eprintln!("rls-server: redis error: {why}");
                }
                self.redis.forget().await;
                Err(Status::unavailable(format!("redis: {why}")))
            }
        }
    }
}

/// The gRPC service: what `tonic-build` would generate for the one method,
/// written out by hand (no protoc, no build script).
#[derive(Clone)]
struct RateLimitService(Arc<RateLimiter>);

struct ShouldRateLimit(Arc<RateLimiter>);

impl tonic::server::UnaryService<RateLimitRequest> for ShouldRateLimit {
    type Response = RateLimitResponse;
    type Future = BoxFuture<Response<RateLimitResponse>, Status>;

    fn call(&mut self, request: Request<RateLimitRequest>) -> Self::Future {
        let limiter = Arc::clone(&self.0);
        Box::pin(async move {
            limiter
                .should_rate_limit(request.into_inner())
                .await
                .map(Response::new)
        })
    }
}

impl<B> Service<http::Request<B>> for RateLimitService
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() == METHOD_PATH {
            let method = ShouldRateLimit(Arc::clone(&self.0));
            Box::pin(async move {
                let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
                Ok(grpc.unary(method, request).await)
            })
        } else {
            let path = request.uri().path().to_string();
            Box::pin(
                async move { Ok(Status::unimplemented(format!("no method {path}")).into_http()) },
            )
        }
    }
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}

#[tokio::main]
async fn main() {
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(why) => {
            if why.is_empty() {
                println!("{USAGE}");
                std::process::exit(0);
            }
            eprintln!("rls-server: {why}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    let client = match redis::Client::open(options.redis.as_str()) {
        Ok(client) => client,
        Err(e) => {
            eprintln!("rls-server: --redis {:?}: {e}", options.redis);
            std::process::exit(2);
        }
    };
    let limiter = Arc::new(RateLimiter {
        redis: Redis {
            client,
            connection: tokio::sync::Mutex::new(None),
            up: AtomicBool::new(false),
        },
        default_limit: options.default_limit,
        key_prefix: options.key_prefix,
        verbose: options.verbose,
    });
    // Connect now so a wrong --redis shows at start; requests retry anyway.
    match tokio::time::timeout(REDIS_TIMEOUT, limiter.redis.connection()).await {
        Ok(Ok(_)) => limiter.redis.up.store(true, Ordering::Relaxed),
        Ok(Err(e)) => eprintln!("rls-server: redis {} not reachable yet: {e}", options.redis),
        Err(_) => eprintln!(
            "rls-server: redis {} not reachable yet: timeout",
            options.redis
        ),
    }

    let listener = match tokio::net::TcpListener::bind(options.addr).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("rls-server: cannot listen on {}: {e}", options.addr);
            std::process::exit(1);
        }
    };
    let local = listener.local_addr().unwrap_or(options.addr);
    println!("rls-server listening on {local} (redis {})", options.redis);
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let served = tonic::transport::Server::builder()
        .serve_with_incoming_shutdown(RateLimitService(limiter), incoming, shutdown_signal())
        .await;
    if let Err(e) = served {
        eprintln!("rls-server: {e}");
        std::process::exit(1);
    }
}
