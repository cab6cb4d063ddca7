//! Benchmark: streams N GiB through `PUT /v2/images/{id}/file` of an in-process mockstack and prints MB/s, the md5/sha512 hash rates of this machine, and the peak memory of the process.
//!
//! `cargo run --release -p mockstack --example upload_bench -- [GIB] [STATE_DIR]`
//! (default 1 GiB in a temporary directory). The client generates data on the fly, so the peak
//! resident size shows that neither side buffers the image.

use std::time::Instant;

use bytes::Bytes;
use md5::Digest;
use mockstack::{Config, MockStack};
use serde_json::json;

const CHUNK: usize = 1 << 20;

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn rate(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / secs / 1e6
}

fn hash_rates(block: &[u8], rounds: usize) -> (f64, f64) {
    let total = (block.len() * rounds) as u64;
    let t = Instant::now();
    let mut md5 = md5::Md5::new();
    for _ in 0..rounds {
        md5.update(block);
    }
    std::hint::black_box(md5.finalize());
    let md5_rate = rate(total, t.elapsed().as_secs_f64());
    let t = Instant::now();
    let mut sha = sha2::Sha512::new();
    for _ in 0..rounds {
        sha.update(block);
    }
    std::hint::black_box(sha.finalize());
    (md5_rate, rate(total, t.elapsed().as_secs_f64()))
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let gib: f64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1.0);
    let state_dir = args.next().map(std::path::PathBuf::from);
    let size = (gib * (1u64 << 30) as f64) as u64;

    let block: Vec<u8> = (0..CHUNK as u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let (md5_rate, sha_rate) = hash_rates(&block, 256);
    println!("hash rates (one core each): md5 {md5_rate:.0} MB/s, sha512 {sha_rate:.0} MB/s");

    // The same digests over a 512 MiB file: one thread doing both, then mockstack's pipeline
    // (md5, sha512 and the writer on their own threads, sharing pooled buffers), writing to
    // /dev/null to leave the disk out.
    let scratch = tempfile::tempdir()?;
    let src = scratch.path().join("bench.bin");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&src)?);
        for _ in 0..512 {
            f.write_all(&block)?;
        }
        f.flush()?;
    }
    let file_size = 512 * CHUNK as u64;
    let t = Instant::now();
    {
        use std::io::Read;
        let mut f = std::fs::File::open(&src)?;
        let (mut md5, mut sha) = (md5::Md5::new(), sha2::Sha512::new());
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            md5.update(&buf[..n]);
            sha.update(&buf[..n]);
        }
        std::hint::black_box((md5.finalize(), sha.finalize()));
    }
    println!("both digests on one thread: {:.0} MB/s", rate(file_size, t.elapsed().as_secs_f64()));
    let t = Instant::now();
    mockstack::glance::data::copy_file(&src, std::path::Path::new("/dev/null"), u64::MAX)?;
    println!("mockstack pipeline (digests in parallel): {:.0} MB/s", rate(file_size, t.elapsed().as_secs_f64()));
    drop(scratch);

    let config = Config { state_dir, ..Config::default() };
    let mock = MockStack::start(config, "127.0.0.1:0".parse()?).await?;
    let http = reqwest::Client::new();
    let auth = json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": "alice", "domain": {"id": "default"}, "password": "mockstack-alice"}}},
        "scope": {"project": {"name": "alpha", "domain": {"id": "default"}}}
    }});
    let r = http.post(format!("{}/auth/tokens", mock.auth_url())).json(&auth).send().await?.error_for_status()?;
    let token = r.headers()["x-subject-token"].to_str()?.to_string();
    let images = format!("{}/image/v2/images", mock.url());
    let created: serde_json::Value = http
        .post(&images)
        .header("x-auth-token", &token)
        .json(&json!({"name": "bench", "disk_format": "raw", "container_format": "bare"}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let id = created["id"].as_str().unwrap_or_default().to_string();

    let block = Bytes::from(block);
    let chunks = size.div_ceil(CHUNK as u64);
    let stream = futures_util::stream::iter((0..chunks).map(move |i| {
        let len = (size - i * CHUNK as u64).min(CHUNK as u64) as usize;
        Ok::<Bytes, std::io::Error>(block.slice(..len))
    }));
    println!("uploading {:.2} GiB ...", size as f64 / (1u64 << 30) as f64);
    let t = Instant::now();
    http.put(format!("{images}/{id}/file"))
        .header("x-auth-token", &token)
        .header("content-type", "application/octet-stream")
        .header("content-length", size)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await?
        .error_for_status()?;
    let upload_secs = t.elapsed().as_secs_f64();
    let image = mock.state().glance().image(&id).ok_or_else(|| anyhow::anyhow!("the image vanished"))?;
    println!(
        "upload: {:.0} MB/s ({upload_secs:.1} s), status {}, size {:?}, checksum {}",
        rate(size, upload_secs),
        image.status,
        image.size,
        image.checksum.unwrap_or_default()
    );

    let t = Instant::now();
    let mut response = http.get(format!("{images}/{id}/file")).header("x-auth-token", &token).send().await?;
    let mut received = 0u64;
    while let Some(chunk) = response.chunk().await? {
        received += chunk.len() as u64;
    }
    println!("download: {:.0} MB/s ({received} bytes)", rate(received, t.elapsed().as_secs_f64()));
    if let Some(peak) = peak_rss_mib() {
        println!("peak resident memory of client + server: {peak:.0} MiB");
    }
    Ok(())
}
