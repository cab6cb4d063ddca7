//! Streamed upload: an N GiB image through `PUT /v2/images/{id}/file` of a mockstack in a child process, with three
//! real HTTP clients (a lean sendfile one, reqwest, the harness's own), against the machine's md5/sha512 rates
//! measured in the same run and against real Glance; plus the CPU each side spent and the resident-memory growth of
//! the mockstack process over the upload.
//!
//! Client and server share the machine's cores, so the client's CPU is taken from the server's: the CPU figures say
//! how much of the rate each side cost, which stays meaningful when other work shares the machine.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use harness::cloud::config::CloudConfig;
use harness::cloud::glance::NewImage;
use harness::cloud::{ClientOptions, Cloud};

use crate::child::{MockChild, PeakRss, cpu_seconds, mock_admin_config};
use crate::hashing::{HashSamples, generated_block};
use crate::real::RealCloud;
use crate::report::{Figure, Goal, Part, RatioKind};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// How the upload part runs.
#[derive(Debug, Clone)]
pub struct UploadPlan {
    /// Image size in bytes.
    pub size: u64,
    /// Bytes hashed per trial when measuring the hash rates, and the number of trials.
    pub hash_bytes: usize,
    pub hash_trials: usize,
    /// Where the generated image and mockstack's image store go.
    pub work_dir: PathBuf,
    /// Uploads behind the figure with a target (the median is reported).
    pub trials: usize,
}

/// What one upload measured.
struct Uploaded {
    mb_per_s: f64,
    /// CPU seconds the mockstack process used for the upload.
    server_cpu: Option<f64>,
    /// CPU seconds this process (the client) used for the upload.
    client_cpu: Option<f64>,
    /// Resident-memory growth of the mockstack process over the upload (peak − before), bytes.
    rss_growth: Option<u64>,
    /// The upload's wall time, seconds.
    secs: f64,
    /// What the scheduler says about mockstack's threads over the upload, summed per thread name.
    threads: Option<BTreeMap<String, Sched>>,
    /// Another upload of the same image with the same client, with mockstack's threads watched.
    watched: Option<Box<Uploaded>>,
}

/// Seconds a thread spent running, and runnable but waiting for a CPU (`/proc/<pid>/task/<tid>/schedstat`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Sched {
    ran: f64,
    waited: f64,
}

/// The scheduler statistics of every thread of a process, by thread id with its name. The name is read at every
/// sample: a new thread starts with its creator's name and names itself a moment later.
fn thread_scheds(pid: u32) -> Option<BTreeMap<u32, (String, Sched)>> {
    let mut threads = BTreeMap::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let Some(tid) = entry.ok().and_then(|e| e.file_name().to_str().and_then(|t| t.parse::<u32>().ok())) else {
            continue;
        };
        // A thread may end between the listing and the reads.
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/schedstat")) else { continue };
        let Ok(name) = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm")) else { continue };
        let name = name.trim().to_string();
        let mut nanos = stat.split_whitespace().map(|f| f.parse::<u64>().unwrap_or(0) as f64 / 1e9);
        let sched = Sched { ran: nanos.next().unwrap_or(0.0), waited: nanos.next().unwrap_or(0.0) };
        threads.insert(tid, (name, sched));
    }
    Some(threads)
}

/// The threads of a process as last sampled, against a first sample: threads that end in between keep their last
/// sample.
struct ThreadSchedule {
    pid: u32,
    before: BTreeMap<u32, (String, Sched)>,
    last: BTreeMap<u32, (String, Sched)>,
}

impl ThreadSchedule {
    fn new(pid: u32) -> Option<ThreadSchedule> {
        let before = thread_scheds(pid)?;
        Some(ThreadSchedule { pid, last: before.clone(), before })
    }

    /// Takes a sample; false once the process is gone.
    fn sample(&mut self) -> bool {
        match thread_scheds(self.pid) {
            Some(now) => {
                self.last.extend(now);
                true
            }
            None => false,
        }
    }

    /// What each thread name's threads did between the first sample and the last.
    fn by_name(self) -> BTreeMap<String, Sched> {
        let mut by_name = BTreeMap::<String, Sched>::new();
        for (tid, (name, now)) in self.last {
            let was = self.before.get(&tid).map(|(_, s)| *s).unwrap_or_default();
            let sum = by_name.entry(name).or_default();
            sum.ran += now.ran - was.ran;
            sum.waited += now.waited - was.waited;
        }
        by_name
    }
}

/// Samples a [`ThreadSchedule`] every 10 ms until stopped, so that threads that end during the upload (the digest
/// threads end with it) are counted.
struct ThreadSampler {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<BTreeMap<String, Sched>>>,
}

impl ThreadSampler {
    /// Takes the first sample now, then samples on a thread of its own.
    fn start(pid: u32) -> ThreadSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = ThreadSchedule::new(pid).map(|mut schedule| {
            std::thread::spawn(move || {
                while !flag.load(Ordering::Relaxed) && schedule.sample() {
                    std::thread::sleep(Duration::from_millis(10));
                }
                schedule.sample();
                schedule.by_name()
            })
        });
        ThreadSampler { stop, thread }
    }

    fn finish(self) -> Option<BTreeMap<String, Sched>> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread?.join().ok()
    }
}

/// What an upload's measurement watches besides time, CPU and peak memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Watch {
    /// Nothing more: reading every thread's /proc files every 10 ms takes CPU from the two cores the upload runs on.
    Rate,
    /// Also where mockstack's threads spent the time (a diagnostic run of its own).
    Threads,
}

/// The clients the image is uploaded with, leanest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Client {
    /// A minimal HTTP/1.1 client: the request head written by hand, the file handed to the socket by the kernel.
    Sendfile,
    /// reqwest streaming generated data: no file, no digests.
    Reqwest,
    /// The harness's own client (`harness::cloud`), which computes md5 and sha512 of what it sends.
    Harness,
}

impl Client {
    const ALL: [Client; 3] = [Client::Sendfile, Client::Reqwest, Client::Harness];

    fn name(self) -> &'static str {
        match self {
            Client::Sendfile => "sendfile client",
            Client::Reqwest => "reqwest client",
            Client::Harness => "harness client",
        }
    }

    fn description(self) -> &'static str {
        match self {
            Client::Sendfile => "HTTP/1.1 by hand, the image file sent by sendfile(2), no client digests",
            Client::Reqwest => "reqwest streaming 1 MiB blocks of generated data, no file, no client digests",
            Client::Harness => "harness::cloud reading the file and computing md5 + sha512 too: four digests per byte",
        }
    }
}

/// Writes the image the client uploads: `size` bytes, a generated first MiB and the rest a hole, so that an 8 GiB
/// image costs no space (md5 and sha512 take as long for any data). In a tmpfs (`/dev/shm`) reading a hole copies
/// the kernel's zero page; on a disk file system every read of a hole allocates and zeroes page-cache pages, which
/// in a virtual machine can cost more than the digests.
pub fn generate_image(path: &Path, size: u64) -> anyhow::Result<()> {
    let mut file = std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let head = generated_block(MIB.min(size) as usize);
    file.write_all(&head)?;
    file.set_len(size)?;
    file.seek(SeekFrom::Start(0))?;
    Ok(())
}

fn rate(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / secs / 1e6
}

/// Creates an image to upload into.
async fn new_image(cloud: &Cloud, name: &str) -> anyhow::Result<String> {
    let glance = cloud.glance().await?;
    let created = glance
        .create_image(&NewImage {
            name: name.into(),
            disk_format: Some("raw".into()),
            container_format: Some("bare".into()),
            ..NewImage::default()
        })
        .await?;
    Ok(created.id)
}

/// Times `upload` (done once the server has answered) and takes the CPU time of both processes and the peak
/// resident memory of the server around it.
async fn measure(
    size: u64,
    server: Option<&MockChild>,
    watch: Watch,
    upload: impl Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<Uploaded> {
    let me = std::process::id();
    let before = server.and_then(MockChild::rss);
    let server_cpu_before = server.and_then(MockChild::cpu);
    let client_cpu_before = cpu_seconds(me);
    let peak_rss = server.map(|c| PeakRss::start(c.pid()));
    let thread_sampler = server.filter(|_| watch == Watch::Threads).map(|c| ThreadSampler::start(c.pid()));
    let started = Instant::now();
    let result = upload.await;
    let secs = started.elapsed().as_secs_f64();
    let client_cpu = client_cpu_before.zip(cpu_seconds(me)).map(|(b, a)| a - b);
    let server_cpu = server_cpu_before.zip(server.and_then(MockChild::cpu)).map(|(b, a)| a - b);
    let peak = peak_rss.and_then(PeakRss::finish);
    let threads = thread_sampler.and_then(ThreadSampler::finish);
    result?;
    let rss_growth = before.zip(peak).map(|(b, p)| p.saturating_sub(b));
    Ok(Uploaded { mb_per_s: rate(size, secs), server_cpu, client_cpu, rss_growth, secs, threads, watched: None })
}

/// Checks that the image is active with `size` bytes and, when known, the digests Glance should have stored.
async fn check_stored(cloud: &Cloud, id: &str, size: u64, digests: Option<&(String, String)>) -> anyhow::Result<()> {
    let stored = cloud.glance().await?.get_image(id).await?;
    anyhow::ensure!(stored.status == "active", "the uploaded image is {}, not active", stored.status);
    anyhow::ensure!(stored.size == Some(size), "the stored image has {:?} bytes, not {size}", stored.size);
    if let Some((md5, sha512)) = digests {
        anyhow::ensure!(
            stored.checksum.as_deref() == Some(md5.as_str())
                && stored.os_hash_value.as_deref() == Some(sha512.as_str()),
            "the stored image's digests differ from the image file's"
        );
    }
    Ok(())
}

/// Uploads the image (or, for [`Client::Reqwest`], as many generated bytes) with `client` into a new image, checks
/// what Glance stored, and deletes the image again. `digests` are the image file's (md5, sha512) when known; the
/// harness client learns them while it sends and returns them.
async fn upload_with(
    client: Client,
    cloud: &Cloud,
    image: &Path,
    size: u64,
    server: Option<&MockChild>,
    watch: Watch,
    digests: Option<&(String, String)>,
) -> anyhow::Result<(Uploaded, Option<(String, String)>)> {
    let glance = cloud.glance().await?;
    let id = new_image(cloud, &format!("bench-upload-{}", client.name().replace(' ', "-"))).await?;
    let url = format!("{}/v2/images/{id}/file", glance.root_url());
    let token = cloud.token().await?;
    let mut learned = None;
    let uploaded = match client {
        Client::Sendfile => {
            let (url, token, image) = (url.clone(), token.value.expose().to_string(), image.to_path_buf());
            let put = async move {
                let status = tokio::task::spawn_blocking(move || put_file(&url, &token, &image, size)).await??;
                anyhow::ensure!((200..300).contains(&status), "the sendfile upload was answered {status}");
                Ok(())
            };
            measure(size, server, watch, put).await
        }
        Client::Reqwest => {
            let block = Bytes::from(generated_block(MIB as usize));
            let chunks = size.div_ceil(MIB);
            let stream = futures_util::stream::iter((0..chunks).map(move |i| {
                let len = (size - i * MIB).min(MIB) as usize;
                Ok::<Bytes, std::io::Error>(block.slice(..len))
            }));
            let put = async {
                let response = reqwest::Client::new()
                    .put(&url)
                    .header("x-auth-token", token.value.expose())
                    .header("content-type", "application/octet-stream")
                    .header("content-length", size)
                    .body(reqwest::Body::wrap_stream(stream))
                    .send()
                    .await
                    .context("the streaming upload failed")?;
                let status = response.status();
                anyhow::ensure!(status.is_success(), "the streaming upload was answered {status}");
                Ok(())
            };
            measure(size, server, watch, put).await
        }
        Client::Harness => {
            let put = async {
                let digest = glance.upload_file(&id, image, None).await?;
                learned = digest.md5.zip(digest.sha512);
                Ok(())
            };
            measure(size, server, watch, put).await
        }
    };
    let checked = match &uploaded {
        Ok(_) => {
            check_stored(cloud, &id, size, if client == Client::Reqwest { None } else { learned.as_ref().or(digests) })
                .await
        }
        Err(_) => Ok(()),
    };
    glance.delete_image(&id).await?;
    let uploaded = uploaded.with_context(|| client.name())?;
    checked.with_context(|| client.name())?;
    Ok((uploaded, learned))
}

/// `PUT url` with the file at `image` as its body, on a plain-HTTP connection of its own: the request head written
/// by hand, the body handed from the file to the socket by the kernel (`sendfile(2)`: no copy through this process),
/// then the answer's status read back. Returns the status code.
pub fn put_file(url: &str, token: &str, image: &Path, size: u64) -> anyhow::Result<u16> {
    let url = reqwest::Url::parse(url).with_context(|| format!("bad upload URL {url}"))?;
    anyhow::ensure!(url.scheme() == "http", "the sendfile client speaks plain http, not {}", url.scheme());
    let host = url.host_str().context("the upload URL has no host")?;
    let port = url.port_or_known_default().context("the upload URL has no port")?;
    let file = std::fs::File::open(image).with_context(|| format!("cannot open {}", image.display()))?;
    let mut stream = TcpStream::connect((host, port)).with_context(|| format!("cannot connect to {host}:{port}"))?;
    let head = format!(
        "PUT {} HTTP/1.1\r\nHost: {host}:{port}\r\nX-Auth-Token: {token}\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {size}\r\nConnection: close\r\n\r\n",
        url.path()
    );
    stream.write_all(head.as_bytes())?;
    let sent = send_file(&stream, &file, size);
    // A server refusing the body (a 413) answers and closes early: its answer says more than the broken pipe.
    let mut answer = BufReader::new(stream);
    let mut status_line = String::new();
    let _ = answer.read_line(&mut status_line);
    let status = status_line.split_whitespace().nth(1).and_then(|code| code.parse::<u16>().ok());
    if let Some(status) = status
        && !(200..300).contains(&status)
    {
        return Ok(status);
    }
    let sent = sent.context("sending the image failed")?;
    anyhow::ensure!(sent == size, "sent {sent} of {size} bytes: {} is shorter", image.display());
    status.with_context(|| format!("no HTTP status line in the answer: {status_line:?}"))
}

/// Sends up to `size` bytes of `file` to `socket` with `sendfile(2)`; returns how many were sent (fewer if the file
/// is shorter).
fn send_file(socket: &TcpStream, file: &std::fs::File, size: u64) -> std::io::Result<u64> {
    let mut offset = 0u64;
    while offset < size {
        let count = (size - offset).min(1 << 30) as usize;
        match rustix::fs::sendfile(socket, file, Some(&mut offset), count) {
            Ok(0) => break,
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(offset)
}

/// The uploads of every client to real Glance, in [`Client::ALL`] order.
async fn upload_to_real(config: &CloudConfig, image: &Path, size: u64) -> anyhow::Result<Vec<Uploaded>> {
    let cloud = Cloud::connect(config.clone(), ClientOptions::default()).await?;
    let mut uploads = Vec::new();
    let mut digests = None;
    for client in [Client::Harness, Client::Sendfile, Client::Reqwest] {
        match upload_with(client, &cloud, image, size, None, Watch::Rate, digests.as_ref()).await {
            Ok((uploaded, learned)) => {
                digests = digests.or(learned);
                uploads.push((client, uploaded));
            }
            Err(e) => {
                let _ = cloud.revoke_token().await;
                return Err(e);
            }
        }
    }
    let _ = cloud.revoke_token().await;
    uploads.sort_by_key(|(client, _)| Client::ALL.iter().position(|c| c == client));
    Ok(uploads.into_iter().map(|(_, u)| u).collect())
}

fn size_name(size: u64) -> String {
    if size >= GIB && size.is_multiple_of(GIB) { format!("{} GiB", size / GIB) } else { format!("{} MiB", size / MIB) }
}

/// The sequential write rate of the file system holding `dir`, in MB/s: `size` bytes of generated data written in
/// 1 MiB blocks and synced, as an image store must eventually put them on disk.
fn disk_write_rate(dir: &Path, size: u64) -> anyhow::Result<f64> {
    let file = tempfile::Builder::new().prefix("isoharness-bench-disk-").tempfile_in(dir)?;
    let block = generated_block(MIB as usize);
    let started = Instant::now();
    let mut out = file.as_file();
    let mut written = 0;
    while written < size {
        let n = (size - written).min(MIB) as usize;
        out.write_all(&block[..n])?;
        written += n as u64;
    }
    out.sync_data()?;
    Ok(rate(size, started.elapsed().as_secs_f64()))
}

/// Free bytes on the file system holding `dir`, as `df` reports them.
fn free_bytes(dir: &Path) -> Option<u64> {
    let output = std::process::Command::new("df").args(["-B1", "--output=avail"]).arg(dir).output().ok()?;
    String::from_utf8_lossy(&output.stdout).lines().nth(1)?.trim().parse().ok()
}

/// Where the wall time of an upload went, for mockstack's digest threads: running, runnable but waiting for a CPU
/// (taken by other threads, of this upload or of the machine's other load), or blocked (waiting for data).
fn thread_figures(upload_name: &str, uploaded: &Uploaded) -> Vec<Figure> {
    let wall = uploaded.secs;
    ["glance-md5", "glance-sha512", "tokio-rt-worker"]
        .into_iter()
        .map(|name| {
            let sched = match &uploaded.threads {
                None => Err("no /proc schedstat".to_string()),
                Some(threads) => threads.get(name).copied().ok_or_else(|| format!("no thread named {name} was seen")),
            };
            let value = sched.as_ref().map(|s| s.ran).map_err(Clone::clone);
            let sched = sched.ok();
            let mut figure = Figure::maybe(
                Part::Upload,
                format!("{upload_name}: mockstack's {name} running"),
                value,
                "s",
            )
            .against("the upload's wall time", Some(wall), "s", RatioKind::Fraction);
            if let Some(s) = sched {
                figure = figure.note(format!(
                    "runnable but waiting for a CPU {:.2} s ({:.0}% of the wall time){}",
                    s.waited,
                    100.0 * s.waited / wall,
                    if name == "tokio-rt-worker" {
                        " (all workers)".to_string()
                    } else {
                        format!(", blocked for data {:.0}%", 100.0 * (1.0 - (s.ran + s.waited) / wall).max(0.0))
                    }
                ));
            }
            figure
        })
        .collect()
}

/// Runs the part and returns its figures.
pub async fn run(plan: &UploadPlan, real: &RealCloud) -> anyhow::Result<Vec<Figure>> {
    // Each store holds one copy at a time (every image is deleted after its upload); the client's image is sparse.
    if let Some(free) = free_bytes(&plan.work_dir) {
        anyhow::ensure!(
            free > plan.size + GIB,
            "{} has {} MiB free; an upload of {} needs that much and 1 GiB to spare (use --upload-gib or --work-dir)",
            plan.work_dir.display(),
            free / MIB,
            size_name(plan.size)
        );
    }
    eprintln!("bench upload: hash rates ...");
    let mut hash_samples = HashSamples::default();
    hash_samples.take(plan.hash_bytes, plan.hash_trials);
    eprintln!("bench upload: disk write rate ...");
    let disk = disk_write_rate(&plan.work_dir, plan.size)?;
    let scratch = tempfile::Builder::new().prefix("isoharness-bench-upload-").tempdir_in(&plan.work_dir)?;
    let shm = Path::new("/dev/shm");
    let image_dir = if shm.is_dir() {
        tempfile::Builder::new().prefix("isoharness-bench-image-").tempdir_in(shm)?
    } else {
        tempfile::Builder::new().prefix("isoharness-bench-image-").tempdir_in(&plan.work_dir)?
    };
    let image = image_dir.path().join("image.raw");
    generate_image(&image, plan.size)?;
    let size = size_name(plan.size);

    let child = MockChild::spawn(&scratch.path().join("mockstack"))?;
    let cloud = Cloud::connect(mock_admin_config(&child.ready.url), ClientOptions::default()).await?;
    let mut mock = Vec::new();
    let mut digests = None;
    // The harness client first: it learns the image's digests, which the other uploads are checked against.
    for client in [Client::Harness, Client::Sendfile, Client::Reqwest] {
        // The figure with a target is the median of several uploads, as its hash-rate reference is.
        let trials = if client == Client::Sendfile { plan.trials.max(1) } else { 1 };
        let mut runs = Vec::new();
        for trial in 1..=trials {
            eprintln!("bench upload: {size} to mockstack (child process), {} ({trial}/{trials}) ...", client.name());
            let (uploaded, learned) =
                upload_with(client, &cloud, &image, plan.size, Some(&child), Watch::Rate, digests.as_ref())
                    .await
                    .context("upload to mockstack")?;
            digests = digests.or(learned);
            runs.push(uploaded);
        }
        runs.sort_by(|a, b| a.mb_per_s.total_cmp(&b.mb_per_s));
        let mut uploaded = runs.swap_remove(runs.len() / 2);
        if client == Client::Sendfile {
            eprintln!(
                "bench upload: {size} to mockstack (child process), {}, mockstack's threads watched ...",
                client.name()
            );
            let (watched, _) =
                upload_with(client, &cloud, &image, plan.size, Some(&child), Watch::Threads, digests.as_ref())
                    .await
                    .context("upload to mockstack")?;
            uploaded.watched = Some(Box::new(watched));
        }
        mock.push((client, uploaded));
    }
    mock.sort_by_key(|(client, _)| Client::ALL.iter().position(|c| c == client));
    drop(cloud);
    child.stop()?;
    // The references again after the uploads: their medians then span the time the uploads ran in.
    eprintln!("bench upload: hash rates again ...");
    hash_samples.take(plan.hash_bytes, plan.hash_trials);
    let hashes = hash_samples.rates();

    let real_uploads: Result<Vec<Uploaded>, String> = match real.config() {
        Ok(config) => {
            eprintln!("bench upload: {size} to real Glance ...");
            Ok(upload_to_real(config, &image, plan.size).await.context("upload to real Glance")?)
        }
        Err(why) => Err(why),
    };

    let slower = hashes.slower();
    let slower_name = if hashes.md5 <= hashes.sha512 { "md5, one thread" } else { "sha512, one thread" };
    let p = Part::Upload;
    let mut figures = vec![
        Figure::new(p, "md5, one thread", hashes.md5, "MB/s")
            .note("each hash rate: the median of trials before and after the uploads"),
        Figure::new(p, "sha512, one thread", hashes.sha512, "MB/s"),
        Figure::new(p, "md5, one thread", hashes.md5, "MB/s")
            .against("md5 per CPU second of its thread", hashes.md5_per_cpu, "MB/s", RatioKind::Fraction)
            .note("the share of a core the reference had; other load took the rest"),
        Figure::new(p, "sha512, one thread", hashes.sha512, "MB/s")
            .against("sha512 per CPU second of its thread", hashes.sha512_per_cpu, "MB/s", RatioKind::Fraction)
            .note("the share of a core the reference had; other load took the rest"),
        Figure::new(p, "md5 ∥ sha512 on two threads", hashes.both_parallel, "MB/s").against(
            slower_name,
            Some(slower),
            "MB/s",
            RatioKind::Fraction,
        ),
        Figure::new(p, format!("disk: write {size} in 1 MiB blocks, then sync"), disk, "MB/s")
            .note(format!("the file system of {}", plan.work_dir.display())),
        Figure::new(p, "md5 + sha512 on one thread", hashes.both_one_thread, "MB/s")
            .against(slower_name, Some(slower), "MB/s", RatioKind::Fraction)
            .note("also the 2-core ceiling when client and server both compute both digests"),
    ];
    // CPU time hardly depends on what else the machine runs: the server's CPU per GiB against what the two
    // digests alone cost at this machine's single-thread rates.
    let gib = plan.size as f64 / GIB as f64;
    // Per CPU second where the thread's CPU time is known: wall-clock rates on a loaded machine overstate the CPU.
    let (md5_cpu_rate, sha512_cpu_rate) =
        (hashes.md5_per_cpu.unwrap_or(hashes.md5), hashes.sha512_per_cpu.unwrap_or(hashes.sha512));
    let digest_cpu_per_gib = GIB as f64 / 1e6 * (1.0 / md5_cpu_rate + 1.0 / sha512_cpu_rate);
    let slower_per_cpu = md5_cpu_rate.min(sha512_cpu_rate);
    for (client, uploaded) in &mock {
        let upload_name = format!("upload {size} to mockstack, {}", client.name());
        let mut rate = Figure::new(p, &upload_name, uploaded.mb_per_s, "MB/s")
            .against(slower_name, Some(slower), "MB/s", RatioKind::Fraction)
            .note(client.description());
        if *client == Client::Sendfile {
            // The leanest real client: what mockstack itself takes, with the least client CPU taken from the cores.
            rate = rate.target(Goal::RatioAtLeast(0.8));
        }
        figures.push(rate);
        if *client == Client::Harness {
            figures.push(Figure::new(p, &upload_name, uploaded.mb_per_s, "MB/s").against(
                "2-core ceiling for four digests (md5 + sha512 on one thread)",
                Some(hashes.both_one_thread),
                "MB/s",
                RatioKind::Fraction,
            ));
        }
        if *client == Client::Sendfile {
            figures.push(
                Figure::new(p, &upload_name, uploaded.mb_per_s, "MB/s")
                    .against("md5 ∥ sha512 on two threads", Some(hashes.both_parallel), "MB/s", RatioKind::Fraction)
                    .note("what the two digests alone reach on both cores in this run: 1 means the upload costs no more than they do"),
            );
            figures.push(
                Figure::new(p, &upload_name, uploaded.mb_per_s, "MB/s")
                    .against(
                        if disk < slower { "the disk's write rate" } else { slower_name },
                        Some(disk.min(slower)),
                        "MB/s",
                        RatioKind::Fraction,
                    )
                    .note("against the slower of the digests and the disk the image store is on"),
            );
        }
        let per_gib = |cpu: Option<f64>| cpu.map(|c| c / gib).ok_or_else(|| "no /proc".to_string());
        figures.push(
            Figure::maybe(
                p,
                format!("mockstack CPU per GiB, {}", client.name()),
                per_gib(uploaded.server_cpu),
                "CPU s",
            )
            .against(
                "md5 + sha512 of a GiB, CPU time of one thread each",
                Some(digest_cpu_per_gib),
                "CPU s",
                RatioKind::TimesLess,
            )
            .note("user + system time of the mockstack process; the ratio is the share spent on the digests"),
        );
        figures.push(Figure::maybe(
            p,
            format!("client CPU per GiB, {}", client.name()),
            per_gib(uploaded.client_cpu),
            "CPU s",
        ));
        // On two cores, an upload needing C CPU seconds per byte on both sides together cannot beat 2 ÷ C; the
        // measured rate's share of that bound is the share of both cores the upload had (the rest: other load).
        let bound = uploaded
            .server_cpu
            .zip(uploaded.client_cpu)
            .filter(|(s, c)| s + c > 0.0)
            .map(|(s, c)| (2.0 * plan.size as f64 / (s + c) / 1e6).min(slower_per_cpu));
        figures.push(
            Figure::new(p, &upload_name, uploaded.mb_per_s, "MB/s")
                .against(
                    "2 cores ÷ (mockstack + client CPU per byte), at most the slower hash per CPU second",
                    bound,
                    "MB/s",
                    RatioKind::Fraction,
                )
                .note("below 1: the machine's other load, or waits, had the rest of the two cores"),
        );
        if *client == Client::Sendfile {
            figures.push(
                Figure::maybe(
                    p,
                    format!("{upload_name}: rate its CPU cost allows on 2 idle cores"),
                    bound.ok_or_else(|| "no /proc".to_string()),
                    "MB/s",
                )
                .against("the slower hash per CPU second", Some(slower_per_cpu), "MB/s", RatioKind::Fraction)
                .note("a projection from CPU time, not a measured rate: 2 cores ÷ (mockstack + client CPU per byte)"),
            );
            if let Some(watched) = &uploaded.watched {
                figures.extend(thread_figures(&format!("{upload_name} (one more upload, threads watched)"), watched));
            }
        }
    }
    for (client, uploaded) in &mock {
        if *client == Client::Reqwest {
            continue;
        }
        let growth = uploaded.rss_growth.map(|b| b as f64 / MIB as f64).ok_or_else(|| "no /proc".to_string());
        figures.push(
            Figure::maybe(p, format!("mockstack resident memory growth, {}", client.name()), growth, "MiB")
                .against("image size", Some(plan.size as f64 / MIB as f64), "MiB", RatioKind::Fraction)
                .target(Goal::ValueBelow(64.0))
                .note("peak VmRSS of the mockstack process during the upload − VmRSS before it"),
        );
    }
    for (i, (client, uploaded)) in mock.iter().enumerate() {
        let real_rate = match &real_uploads {
            Ok(uploads) => uploads.get(i).map(|u| u.mb_per_s).ok_or_else(|| "not measured".to_string()),
            Err(why) => Err(why.clone()),
        };
        figures.push(
            Figure::maybe(p, format!("upload {size} to real Glance, {}", client.name()), real_rate.clone(), "MB/s")
                .against(slower_name, Some(slower), "MB/s", RatioKind::Fraction),
        );
        figures.push(
            Figure::new(p, format!("upload {size} to mockstack, {}", client.name()), uploaded.mb_per_s, "MB/s")
                .against("real Glance, same client and image", real_rate.ok(), "MB/s", RatioKind::Times),
        );
    }
    Ok(figures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_that_ended_keeps_its_last_sample_under_its_name() {
        let mut schedule = ThreadSchedule::new(std::process::id()).expect("/proc/<pid>/task/<tid>/schedstat");
        let (worked, wait_worked) = std::sync::mpsc::channel();
        let (exit, wait_exit) = std::sync::mpsc::channel::<()>();
        let worker = std::thread::Builder::new()
            .name("bench-busy".into())
            .spawn(move || {
                let block = generated_block(MIB as usize);
                for _ in 0..20 {
                    std::hint::black_box(<md5::Md5 as md5::Digest>::digest(&block));
                }
                worked.send(()).unwrap();
                let _ = wait_exit.recv();
            })
            .unwrap();
        wait_worked.recv().unwrap();
        assert!(schedule.sample());
        exit.send(()).unwrap();
        worker.join().unwrap();
        assert!(schedule.sample());
        let threads = schedule.by_name();
        assert!(threads.get("bench-busy").is_some_and(|s| s.ran > 0.0), "{threads:?}");
    }

    #[test]
    fn a_thread_that_names_itself_after_the_first_sample_counts_under_its_own_name() {
        let mut schedule = ThreadSchedule::new(std::process::id()).expect("/proc/<pid>/task/<tid>/schedstat");
        let (started, wait_started) = std::sync::mpsc::channel();
        let (go, wait_go) = std::sync::mpsc::channel::<()>();
        let (worked, wait_worked) = std::sync::mpsc::channel();
        let (exit, wait_exit) = std::sync::mpsc::channel::<()>();
        // Unnamed through std: it starts with this thread's name, as a new thread does until it names itself.
        let worker = std::thread::spawn(move || {
            started.send(()).unwrap();
            let _ = wait_go.recv();
            std::fs::write("/proc/thread-self/comm", "bench-renamed").unwrap();
            let block = generated_block(MIB as usize);
            for _ in 0..20 {
                std::hint::black_box(<md5::Md5 as md5::Digest>::digest(&block));
            }
            worked.send(()).unwrap();
            let _ = wait_exit.recv();
        });
        wait_started.recv().unwrap();
        assert!(schedule.sample());
        go.send(()).unwrap();
        wait_worked.recv().unwrap();
        assert!(schedule.sample());
        exit.send(()).unwrap();
        worker.join().unwrap();
        let threads = schedule.by_name();
        assert!(threads.get("bench-renamed").is_some_and(|s| s.ran > 0.0), "{threads:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_sendfile_client_uploads_the_file_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let config = mockstack::Config { state_dir: Some(dir.path().join("state")), ..mockstack::Config::default() };
        let mock = mockstack::MockStack::start(config, "127.0.0.1:0".parse().unwrap()).await.unwrap();
        let cloud = Cloud::connect(mock_admin_config(mock.url()), ClientOptions::default()).await.unwrap();
        let glance = cloud.glance().await.unwrap();
        let image = dir.path().join("image.raw");
        let data = generated_block(3 * MIB as usize + 5);
        std::fs::write(&image, &data).unwrap();
        let id = new_image(&cloud, "sendfile").await.unwrap();
        let url = format!("{}/v2/images/{id}/file", glance.root_url());
        let token = cloud.token().await.unwrap().value.expose().to_string();
        let size = data.len() as u64;
        let status = tokio::task::spawn_blocking(move || put_file(&url, &token, &image, size)).await.unwrap().unwrap();
        assert_eq!(status, 204);
        let expected = mockstack::glance::data::digests_of(&data);
        check_stored(&cloud, &id, size, Some(&(expected.md5, expected.sha512))).await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_sendfile_client_reports_the_servers_refusal() {
        let dir = tempfile::tempdir().unwrap();
        let config = mockstack::Config {
            state_dir: Some(dir.path().join("state")),
            image_size_cap: 1000,
            ..mockstack::Config::default()
        };
        let mock = mockstack::MockStack::start(config, "127.0.0.1:0".parse().unwrap()).await.unwrap();
        let cloud = Cloud::connect(mock_admin_config(mock.url()), ClientOptions::default()).await.unwrap();
        let glance = cloud.glance().await.unwrap();
        let image = dir.path().join("image.raw");
        std::fs::write(&image, generated_block(MIB as usize)).unwrap();
        let id = new_image(&cloud, "too-large").await.unwrap();
        let url = format!("{}/v2/images/{id}/file", glance.root_url());
        let token = cloud.token().await.unwrap().value.expose().to_string();
        let status = tokio::task::spawn_blocking(move || put_file(&url, &token, &image, MIB)).await.unwrap().unwrap();
        assert_eq!(status, 413);
    }
}
