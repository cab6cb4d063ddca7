//! Streamed upload: an N GiB image through `PUT /v2/images/{id}/file` of a mockstack in a child process, with the
//! real client (`harness::cloud`), against the machine's md5/sha512 rates measured in the same run and against real
//! Glance; plus the resident-memory growth of the mockstack process over the upload.

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use bytes::Bytes;
use harness::cloud::config::CloudConfig;
use harness::cloud::glance::NewImage;
use harness::cloud::{ClientOptions, Cloud};

use crate::child::{MockChild, RssSampler, mock_admin_config};
use crate::hashing::{self, HashRates, generated_block};
use crate::real::RealCloud;
use crate::report::{Figure, Part, RatioKind, Target};

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
}

/// What one upload measured.
struct Uploaded {
    mb_per_s: f64,
    /// CPU seconds the mockstack process used for the upload.
    server_cpu: Option<f64>,
    /// Resident-memory growth of the mockstack process over the upload (peak − before), bytes.
    rss_growth: Option<u64>,
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

/// Uploads `image` with the harness client into a new image, checks Glance's checksum and os_hash_value against
/// the client's digests, and deletes the image again.
async fn upload_with_harness(
    cloud: &Cloud,
    image: &Path,
    size: u64,
    memory_of: Option<&MockChild>,
) -> anyhow::Result<Uploaded> {
    let glance = cloud.glance().await?;
    let created = glance
        .create_image(&NewImage {
            name: "bench-upload".into(),
            disk_format: Some("raw".into()),
            container_format: Some("bare".into()),
            ..NewImage::default()
        })
        .await?;
    let before = memory_of.and_then(MockChild::rss);
    let cpu_before = memory_of.and_then(MockChild::cpu);
    let sampler = memory_of.map(|c| RssSampler::start(c.pid()));
    let started = Instant::now();
    let result = glance.upload_file(&created.id, image, None).await;
    let secs = started.elapsed().as_secs_f64();
    let peak = sampler.map(RssSampler::finish);
    let server_cpu = cpu_before.zip(memory_of.and_then(MockChild::cpu)).map(|(b, a)| a - b);
    let check = async {
        let digest = result?;
        let stored = glance.get_image(&created.id).await?;
        anyhow::ensure!(stored.status == "active", "the uploaded image is {}, not active", stored.status);
        anyhow::ensure!(
            stored.checksum.as_deref() == Some(digest.md5.as_str())
                && stored.os_hash_value.as_deref() == Some(digest.sha512.as_str())
                && stored.size == Some(size),
            "the stored image's size and digests differ from what the client sent"
        );
        Ok(())
    };
    let checked = check.await;
    glance.delete_image(&created.id).await?;
    checked?;
    let rss_growth = before.zip(peak).map(|(b, p)| p.saturating_sub(b));
    Ok(Uploaded { mb_per_s: rate(size, secs), server_cpu, rss_growth })
}

/// Uploads generated data (one block repeated, no digests on the client side) with a plain streaming request:
/// what mockstack's side alone can take.
async fn upload_raw_stream(cloud: &Cloud, size: u64, child: Option<&MockChild>) -> anyhow::Result<Uploaded> {
    let glance = cloud.glance().await?;
    let created = glance
        .create_image(&NewImage {
            name: "bench-upload-raw".into(),
            disk_format: Some("raw".into()),
            container_format: Some("bare".into()),
            ..NewImage::default()
        })
        .await?;
    let token = cloud.token().await?;
    let block = Bytes::from(generated_block(MIB as usize));
    let chunks = size.div_ceil(MIB);
    let stream = futures_util::stream::iter((0..chunks).map(move |i| {
        let len = (size - i * MIB).min(MIB) as usize;
        Ok::<Bytes, std::io::Error>(block.slice(..len))
    }));
    let before = child.and_then(MockChild::rss);
    let cpu_before = child.and_then(MockChild::cpu);
    let sampler = child.map(|c| RssSampler::start(c.pid()));
    let started = Instant::now();
    let response = reqwest::Client::new()
        .put(format!("{}/v2/images/{}/file", glance.root_url(), created.id))
        .header("x-auth-token", token.value.expose())
        .header("content-type", "application/octet-stream")
        .header("content-length", size)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await;
    let secs = started.elapsed().as_secs_f64();
    let peak = sampler.map(RssSampler::finish);
    let server_cpu = cpu_before.zip(child.and_then(MockChild::cpu)).map(|(b, a)| a - b);
    let status = response.map(|r| r.status());
    glance.delete_image(&created.id).await?;
    let status = status.context("the streaming upload failed")?;
    anyhow::ensure!(status.is_success(), "the streaming upload was answered {status}");
    let rss_growth = before.zip(peak).map(|(b, p)| p.saturating_sub(b));
    Ok(Uploaded { mb_per_s: rate(size, secs), server_cpu, rss_growth })
}

/// The same two uploads to real Glance: (harness client, streaming client).
async fn upload_to_real(config: &CloudConfig, image: &Path, size: u64) -> anyhow::Result<(Uploaded, Uploaded)> {
    let cloud = Cloud::connect(config.clone(), ClientOptions::default()).await?;
    let harness = upload_with_harness(&cloud, image, size, None).await.context("harness client");
    let raw = match &harness {
        Ok(_) => upload_raw_stream(&cloud, size, None).await.context("streaming client"),
        Err(_) => Err(anyhow::anyhow!("not tried")),
    };
    let _ = cloud.revoke_token().await;
    Ok((harness?, raw?))
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
    let hashes: HashRates = hashing::measure(plan.hash_bytes, plan.hash_trials);
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

    eprintln!("bench upload: {size} to mockstack (child process) ...");
    let child = MockChild::spawn(&scratch.path().join("mockstack"))?;
    let cloud = Cloud::connect(mock_admin_config(&child.ready.url), ClientOptions::default()).await?;
    let harness = upload_with_harness(&cloud, &image, plan.size, Some(&child)).await.context("harness upload")?;
    eprintln!("bench upload: {size} to mockstack without client digests ...");
    let raw = upload_raw_stream(&cloud, plan.size, Some(&child)).await.context("streaming upload")?;
    drop(cloud);
    child.stop()?;

    let real_upload = match real.config() {
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
        Figure::new(p, "md5, one thread", hashes.md5, "MB/s"),
        Figure::new(p, "sha512, one thread", hashes.sha512, "MB/s"),
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
        Figure::new(p, format!("upload {size} to mockstack, harness client"), harness.mb_per_s, "MB/s")
            .against(slower_name, Some(slower), "MB/s", RatioKind::Fraction)
            .target(Target::RatioAtLeast(0.8))
            .note("the client hashes md5+sha512 too: four digests per byte on two cores"),
        Figure::new(p, format!("upload {size} to mockstack, harness client"), harness.mb_per_s, "MB/s").against(
            "2-core ceiling for four digests (md5 + sha512 on one thread)",
            Some(hashes.both_one_thread),
            "MB/s",
            RatioKind::Fraction,
        ),
        Figure::new(p, format!("upload {size} to mockstack, streaming client without digests"), raw.mb_per_s, "MB/s")
            .against(slower_name, Some(slower), "MB/s", RatioKind::Fraction)
            .target(Target::RatioAtLeast(0.8))
            .note("only mockstack hashes: its own pipeline against the machine"),
        Figure::new(p, format!("upload {size} to mockstack, streaming client without digests"), raw.mb_per_s, "MB/s")
            .against(
                if disk < slower { "the disk's write rate" } else { slower_name },
                Some(disk.min(slower)),
                "MB/s",
                RatioKind::Fraction,
            )
            .note("against the slower of the digests and the disk the image store is on"),
    ];
    // CPU time hardly depends on what else the machine runs: the server's CPU per GiB against what the two
    // digests alone cost at this machine's single-thread rates.
    let digest_cpu_per_gib = GIB as f64 / 1e6 * (1.0 / hashes.md5 + 1.0 / hashes.sha512);
    for (what, uploaded) in [("harness client", &harness), ("streaming client", &raw)] {
        let per_gib =
            uploaded.server_cpu.map(|c| c / (plan.size as f64 / GIB as f64)).ok_or_else(|| "no /proc".to_string());
        figures.push(
            Figure::maybe(p, format!("mockstack CPU per GiB uploaded, {what}"), per_gib, "CPU s")
                .against(
                    "md5 + sha512 of a GiB, one thread each",
                    Some(digest_cpu_per_gib),
                    "CPU s",
                    RatioKind::TimesLess,
                )
                .note("user + system time of the mockstack process; the ratio is the share spent on the digests"),
        );
    }
    for (what, uploaded) in [("harness client", &harness), ("streaming client", &raw)] {
        let growth = uploaded.rss_growth.map(|b| b as f64 / MIB as f64).ok_or_else(|| "no /proc".to_string());
        figures.push(
            Figure::maybe(p, format!("mockstack resident memory growth, {what}"), growth, "MiB")
                .against("image size", Some(plan.size as f64 / MIB as f64), "MiB", RatioKind::Fraction)
                .target(Target::ValueBelow(64.0))
                .note("peak VmRSS of the mockstack process during the upload − VmRSS before it"),
        );
    }
    let real_rates: [Result<f64, String>; 2] = match &real_upload {
        Ok((h, r)) => [Ok(h.mb_per_s), Ok(r.mb_per_s)],
        Err(why) => [Err(why.clone()), Err(why.clone())],
    };
    for ((what, mock_rate), real_rate) in
        [("harness client", harness.mb_per_s), ("streaming client without digests", raw.mb_per_s)]
            .into_iter()
            .zip(real_rates)
    {
        figures.push(
            Figure::maybe(p, format!("upload {size} to real Glance, {what}"), real_rate.clone(), "MB/s").against(
                slower_name,
                Some(slower),
                "MB/s",
                RatioKind::Fraction,
            ),
        );
        figures.push(Figure::new(p, format!("upload {size} to mockstack, {what}"), mock_rate, "MB/s").against(
            "real Glance, same client and image",
            real_rate.ok(),
            "MB/s",
            RatioKind::Times,
        ));
    }
    Ok(figures)
}
