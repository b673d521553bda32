//! `poll_load`: a closed-loop HTTP load generator that polls one URL over keep-alive connections,
//! the way deploy agents poll a channel's `timestamp.json`.
//!
//! `bench/poll.sh` builds it (`cargo build --release --example poll_load`) and runs it, in turns,
//! against arca's `GET /tuf/{channel}/metadata/timestamp.json` and against nginx serving the same
//! bytes as a static file, then compares the request rates and latency percentiles of the same
//! run; with `--if-none-match` it measures conditional polling (answers 304).
//!
//! ```text
//! poll_load URL [--also URL]... [--connections 128] [--duration 10] [--warmup 2] [--if-none-match ETAG]
//!           [--client raw|reqwest] [--threads N] [--ca-cert PEM] [--json]
//! ```
//!
//! An `https://` URL is polled over TLS (rustls on ring, ALPN `http/1.1`), trusting the CA
//! certificates of `--ca-cert`: each connection does one handshake, then keeps polling, as an
//! agent's keep-alive connection does.
//!
//! Each of `--connections` tasks sends one request at a time over its own connection and records
//! the latency of every response that starts after the warm-up and ends within `--duration`.
//! Statuses 2xx and 304 count as successes (the rate counts only those); any other status is
//! counted apart, and so are transport errors and timeouts (the connection is then reopened).
//!
//! The default client (`raw`) speaks just enough HTTP/1.1 over a `TcpStream` for this: write the
//! request, read the status line and headers, skip the body (`content-length` or chunked).
//! Against nginx on this 2-core machine, where the load generator and the server share the cores,
//! it drove about 2.5 times the rate of a `reqwest` client (one shared client with a pool as big as
//! `--connections` did slightly better than one client per task), because it leaves more CPU to
//! the server under test. `--client reqwest` is there to cross-check it.

use std::io;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use std::sync::Arc;

use anyhow::Context as _;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// A connection, plain or TLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
type Conn = BufReader<Box<dyn Io>>;

#[derive(Parser)]
#[command(about = "Poll one URL over keep-alive connections and report rate and latency")]
struct Args {
    /// The URL to poll (`http://` or `https://`).
    url: url::Url,
    /// More URLs to poll (other servers behind one name, say): the connections are spread over
    /// `URL` and these in turn, and the figures are for all of them together (raw client only).
    #[arg(long, value_name = "URL")]
    also: Vec<url::Url>,
    /// PEM file of the CA certificates an `https://` URL's certificate must chain to.
    #[arg(long)]
    ca_cert: Option<std::path::PathBuf>,
    /// Concurrent connections, each with one request in flight.
    #[arg(long, default_value_t = 128)]
    connections: usize,
    /// Measured seconds (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before measuring starts (connections open, caches fill).
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Send `If-None-Match` with this entity tag (as the server returned it, quotes included).
    #[arg(long)]
    if_none_match: Option<String>,
    /// Seconds before a request counts as an error and its connection is reopened.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// Which HTTP client the tasks use.
    #[arg(long, value_enum, default_value_t = Client::Raw)]
    client: Client,
    /// Runtime worker threads (default: one per CPU).
    #[arg(long)]
    threads: Option<usize>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum Client {
    /// Minimal HTTP/1.1 over a `TcpStream`, one connection per task.
    Raw,
    /// One `reqwest::Client` shared by all tasks, its pool as big as `--connections`.
    Reqwest,
}

impl Client {
    fn name(self) -> &'static str {
        match self {
            Client::Raw => "raw",
            Client::Reqwest => "reqwest",
        }
    }
}

/// What one task saw inside the measured window.
#[derive(Default)]
struct Tally {
    /// Latency of each successful response, in microseconds.
    latencies_us: Vec<u64>,
    status_304: u64,
    other_status: u64,
    errors: u64,
    /// Connections opened after the first (after an error or a `connection: close`).
    reconnects: u64,
    first_error: Option<String>,
    /// CPU time this process used during the measured window, where the OS tells.
    cpu: Option<Duration>,
}

impl Tally {
    fn error(&mut self, e: String) {
        self.errors += 1;
        self.first_error.get_or_insert(e);
    }

    fn merge(&mut self, o: Tally) {
        self.latencies_us.extend(o.latencies_us);
        self.status_304 += o.status_304;
        self.other_status += o.other_status;
        self.errors += o.errors;
        self.reconnects += o.reconnects;
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
    }
}

/// The measured window, shared by all tasks.
#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    end: Instant,
    timeout: Duration,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        std::iter::once(&args.url)
            .chain(&args.also)
            .all(|u| matches!(u.scheme(), "http" | "https")),
        "only http:// and https:// URLs are supported"
    );
    anyhow::ensure!(
        args.also.is_empty() || matches!(args.client, Client::Raw),
        "--also needs --client raw"
    );
    anyhow::ensure!(args.connections > 0, "--connections must be at least 1");
    anyhow::ensure!(
        args.duration > 0.0 && args.warmup >= 0.0 && args.timeout > 0.0,
        "--duration and --timeout must be positive, --warmup not negative"
    );
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.threads {
        rt.worker_threads(n);
    }
    let tally = rt.enable_all().build()?.block_on(run(&args))?;
    report(&args, tally);
    Ok(())
}

async fn run(args: &Args) -> anyhow::Result<Tally> {
    let begin = Instant::now();
    let start = begin + Duration::from_secs_f64(args.warmup);
    let w = Window {
        start,
        end: start + Duration::from_secs_f64(args.duration),
        timeout: Duration::from_secs_f64(args.timeout),
    };
    let mut tasks = tokio::task::JoinSet::new();
    match args.client {
        Client::Raw => {
            let tls = match args.url.scheme() {
                "https" => Some(tls_connector(args.ca_cert.as_deref())?),
                _ => None,
            };
            let targets: Vec<(Arc<Target>, Vec<u8>)> = std::iter::once(&args.url)
                .chain(&args.also)
                .map(|url| {
                    let target = Target {
                        host: url.host_str().unwrap_or("localhost").to_owned(),
                        port: url.port_or_known_default().unwrap_or(80),
                        tls: tls.clone().filter(|_| url.scheme() == "https"),
                    };
                    let request = raw_request_bytes(url, args.if_none_match.as_deref());
                    (Arc::new(target), request)
                })
                .collect();
            for i in 0..args.connections {
                let (target, request) = &targets[i % targets.len()];
                tasks.spawn(raw_task(target.clone(), request.clone(), w));
            }
        }
        Client::Reqwest => {
            arca::client::install_crypto();
            let mut client = reqwest::Client::builder();
            if let Some(ca) = &args.ca_cert {
                let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
                for cert in reqwest::Certificate::from_pem_bundle(&pem)? {
                    client = client.add_root_certificate(cert);
                }
            }
            let client = client
                .pool_max_idle_per_host(args.connections)
                .http1_only()
                .tcp_nodelay(true)
                .timeout(w.timeout)
                .build()?;
            for _ in 0..args.connections {
                tasks.spawn(reqwest_task(
                    client.clone(),
                    args.url.clone(),
                    args.if_none_match.clone(),
                    w,
                ));
            }
        }
    }
    // What this process costs the machine while measured (it shares the cores with the server).
    let cpu = tokio::spawn(async move {
        tokio::time::sleep_until(w.start).await;
        let c0 = cpu_time();
        tokio::time::sleep_until(w.end).await;
        Some(cpu_time()?.saturating_sub(c0?))
    });
    let mut total = Tally::default();
    while let Some(t) = tasks.join_next().await {
        total.merge(t?);
    }
    total.cpu = cpu.await?;
    Ok(total)
}

/// CPU time all threads of this process have used so far (Linux: `/proc/self/task/*/schedstat`).
fn cpu_time() -> Option<Duration> {
    let mut ns = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        ns += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(Duration::from_nanos(ns))
}

/// The request every raw task sends, byte for byte.
fn raw_request_bytes(url: &url::Url, if_none_match: Option<&str>) -> Vec<u8> {
    let mut path = url.path().to_owned();
    if let Some(q) = url.query() {
        path.push('?');
        path.push_str(q);
    }
    let host = match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        _ => "localhost".to_owned(),
    };
    let mut req =
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: poll_load\r\nAccept: */*\r\n");
    if let Some(etag) = if_none_match {
        req.push_str(&format!("If-None-Match: {etag}\r\n"));
    }
    req.push_str("\r\n");
    req.into_bytes()
}

/// Where raw tasks connect, and how.
struct Target {
    host: String,
    port: u16,
    tls: Option<tokio_rustls::TlsConnector>,
}

/// A TLS client trusting the certificates of `ca` (rustls on ring, HTTP/1.1 by ALPN).
fn tls_connector(ca: Option<&std::path::Path>) -> anyhow::Result<tokio_rustls::TlsConnector> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let ca = ca.context("an https:// URL needs --ca-cert")?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in
        CertificateDer::pem_file_iter(ca).with_context(|| format!("reading {}", ca.display()))?
    {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// Opens a connection to `target` (with the TLS handshake, for https).
async fn connect(target: &Target) -> io::Result<Conn> {
    let s = TcpStream::connect((target.host.as_str(), target.port)).await?;
    s.set_nodelay(true)?;
    let io: Box<dyn Io> = match &target.tls {
        None => Box::new(s),
        Some(tls) => {
            let name = rustls::pki_types::ServerName::try_from(target.host.clone())
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            Box::new(tls.connect(name, s).await?)
        }
    };
    Ok(BufReader::with_capacity(16 << 10, io))
}

async fn raw_task(target: Arc<Target>, request: Vec<u8>, w: Window) -> Tally {
    let mut t = Tally::default();
    let mut conn: Option<Conn> = None;
    let mut opened = 0u64;
    let mut line = Vec::with_capacity(256);
    loop {
        let t0 = Instant::now();
        if t0 >= w.end {
            break;
        }
        let measured = t0 >= w.start;
        let outcome = tokio::time::timeout(w.timeout, async {
            if conn.is_none() {
                conn = Some(connect(&target).await?);
                opened += 1;
                if measured && opened > 1 {
                    t.reconnects += 1;
                }
            }
            let c = conn.as_mut().expect("connected above");
            raw_exchange(c, &request, &mut line).await
        })
        .await;
        let t1 = Instant::now();
        let result = match outcome {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no response within {:?}", w.timeout)),
        };
        match result {
            Ok((status, keep_alive)) => {
                if !keep_alive {
                    conn = None;
                }
                if measured && t1 <= w.end {
                    t.count(status, t1 - t0);
                }
            }
            Err(e) => {
                conn = None;
                if measured {
                    t.error(e);
                }
                // Do not spin on a refused connection.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    t
}

impl Tally {
    fn count(&mut self, status: u16, latency: Duration) {
        if (200..300).contains(&status) || status == 304 {
            if status == 304 {
                self.status_304 += 1;
            }
            let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
            self.latencies_us.push(us);
        } else {
            self.other_status += 1;
        }
    }
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_owned())
}

/// Reads one `\r\n`-terminated line into `line` (cleared first), without the line ending.
async fn read_line(c: &mut Conn, line: &mut Vec<u8>) -> io::Result<()> {
    line.clear();
    if c.read_until(b'\n', line).await? == 0 || line.last() != Some(&b'\n') {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed mid-response",
        ));
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(())
}

/// Reads and drops `n` bytes.
async fn skip(c: &mut Conn, mut n: u64) -> io::Result<()> {
    while n > 0 {
        let buf = c.fill_buf().await?;
        if buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed mid-body",
            ));
        }
        let k = buf.len().min(usize::try_from(n).unwrap_or(usize::MAX));
        c.consume(k);
        n -= k as u64;
    }
    Ok(())
}

/// Sends `request` and reads the whole response; returns its status and whether the connection
/// may be reused.
async fn raw_exchange(c: &mut Conn, request: &[u8], line: &mut Vec<u8>) -> io::Result<(u16, bool)> {
    c.get_mut().write_all(request).await?;
    c.get_mut().flush().await?;
    read_line(c, line).await?;
    let mut keep_alive = line.starts_with(b"HTTP/1.1 ");
    let status: u16 = line
        .get(9..12)
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("malformed status line"))?;
    let mut length: Option<u64> = None;
    let mut chunked = false;
    loop {
        read_line(c, line).await?;
        if line.is_empty() {
            break;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Err(bad("malformed header line"));
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if name.eq_ignore_ascii_case(b"content-length") {
            let v = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
            length = Some(v.ok_or_else(|| bad("malformed content-length"))?);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            chunked = value.eq_ignore_ascii_case(b"chunked");
        } else if name.eq_ignore_ascii_case(b"connection") {
            if value.eq_ignore_ascii_case(b"close") {
                keep_alive = false;
            } else if value.eq_ignore_ascii_case(b"keep-alive") {
                keep_alive = true;
            }
        }
    }
    if status == 304 || status == 204 || status < 200 {
        return Ok((status, keep_alive));
    }
    if chunked {
        loop {
            read_line(c, line).await?;
            let size = line.split(|&b| b == b';').next().unwrap_or_default();
            let size = std::str::from_utf8(size.trim_ascii())
                .ok()
                .and_then(|s| u64::from_str_radix(s, 16).ok())
                .ok_or_else(|| bad("malformed chunk size"))?;
            if size == 0 {
                // Trailers, up to the empty line.
                loop {
                    read_line(c, line).await?;
                    if line.is_empty() {
                        return Ok((status, keep_alive));
                    }
                }
            }
            skip(c, size + 2).await?;
        }
    }
    match length {
        Some(n) => skip(c, n).await?,
        None => {
            // Delimited by the end of the connection.
            skip(c, u64::MAX).await.or_else(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof => Ok(()),
                _ => Err(e),
            })?;
            keep_alive = false;
        }
    }
    Ok((status, keep_alive))
}

async fn reqwest_task(
    client: reqwest::Client,
    url: url::Url,
    if_none_match: Option<String>,
    w: Window,
) -> Tally {
    let mut t = Tally::default();
    loop {
        let t0 = Instant::now();
        if t0 >= w.end {
            break;
        }
        let measured = t0 >= w.start;
        let mut req = client.get(url.clone());
        if let Some(etag) = &if_none_match {
            req = req.header("if-none-match", etag);
        }
        let result = async {
            let resp = req.send().await?;
            let status = resp.status().as_u16();
            resp.bytes().await?;
            Ok::<_, reqwest::Error>(status)
        }
        .await;
        let t1 = Instant::now();
        match result {
            Ok(status) => {
                if measured && t1 <= w.end {
                    t.count(status, t1 - t0);
                }
            }
            Err(e) => {
                if measured {
                    t.error(format!("{e:#}"));
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    t
}

/// The nearest-rank percentile `p` (0..=1) of sorted values.
fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn report(args: &Args, mut t: Tally) {
    t.latencies_us.sort_unstable();
    let lat = &t.latencies_us;
    let ok = lat.len() as u64;
    let rate = ok as f64 / args.duration;
    let (p50, p90, p99) = (
        percentile(lat, 0.50),
        percentile(lat, 0.90),
        percentile(lat, 0.99),
    );
    let max = lat.last().copied().unwrap_or(0);
    let mean = if ok == 0 {
        0.0
    } else {
        lat.iter().sum::<u64>() as f64 / ok as f64
    };
    if args.json {
        let out = serde_json::json!({
            "url": args.url.as_str(),
            "client": args.client.name(),
            "connections": args.connections,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "if_none_match": args.if_none_match,
            "requests": ok,
            "requests_per_s": (rate * 10.0).round() / 10.0,
            "p50_us": p50,
            "p90_us": p90,
            "p99_us": p99,
            "max_us": max,
            "mean_us": mean.round(),
            "status_304": t.status_304,
            "other_status": t.other_status,
            "errors": t.errors,
            "reconnects": t.reconnects,
            "first_error": t.first_error,
            "cpu_cores": t.cpu.map(|c| (c.as_secs_f64() / args.duration * 100.0).round() / 100.0),
        });
        println!("{out}");
        return;
    }
    let ms = |us: u64| us as f64 / 1000.0;
    println!("{}", args.url);
    println!(
        "  {} connections ({} client), {:.1} s measured after {:.1} s warm-up{}",
        args.connections,
        args.client.name(),
        args.duration,
        args.warmup,
        match &args.if_none_match {
            Some(e) => format!(", If-None-Match: {e}"),
            None => String::new(),
        }
    );
    println!(
        "  requests/s  {rate:.1}  ({ok} successful responses, {} of them 304)",
        t.status_304
    );
    println!(
        "  latency ms  p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3}  mean {:.3}",
        ms(p50),
        ms(p90),
        ms(p99),
        ms(max),
        mean / 1000.0
    );
    println!(
        "  other statuses {}  errors {}  reconnects {}",
        t.other_status, t.errors, t.reconnects
    );
    if let Some(c) = t.cpu {
        println!(
            "  load generator CPU {:.2} cores",
            c.as_secs_f64() / args.duration
        );
    }
    if let Some(e) = &t.first_error {
        println!("  first error: {e}");
    }
}
