//! Load test of `geoexp serve`: N concurrent `predict-cardinal-images` requests on loopback
//! against a `tiny-cnn` checkpoint on the CPU. Reports requests/s and latency percentiles,
//! and checks every answer is a 200 with the coordinates of the same request made alone
//! (to 1e-6°: batched forward passes may round the last bits differently).
//!
//! `cargo bench --bench serve_load`; env: `LOAD_REQUESTS` (default 200), `LOAD_CONCURRENCY`
//! (default: all at once), `LOAD_VIEW_SIZE` (pixels of the uploaded views, default 256),
//! `LOAD_IMAGE_SIZE` (the model's input, default 64), `LOAD_WORKERS` and `LOAD_BATCH_SIZE`
//! (the server's `--workers` and `--batch-size`, default: its own defaults; batch size 1
//! turns batching off).
//!
//! It builds everything in a temporary folder with the release binary: a synthetic dataset,
//! a one-epoch training run, `models/tiny.safetensors`, then the server on port 0.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::multipart::{Form, Part};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn geoexp(dir: &Path, args: &[&str]) {
    let status = Command::new(env!("CARGO_BIN_EXE_geoexp"))
        .current_dir(dir)
        .args(args)
        .arg("-q")
        .status()
        .expect("geoexp runs");
    assert!(status.success(), "geoexp {args:?} failed");
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    let requests = env("LOAD_REQUESTS", 200);
    let concurrency = env("LOAD_CONCURRENCY", requests).max(1);
    let view_size = env("LOAD_VIEW_SIZE", 256);
    let image_size = env("LOAD_IMAGE_SIZE", 64);
    let dir = tempfile::tempdir().expect("temporary folder");
    let root = dir.path();
    geoexp(
        root,
        &[
            "synth",
            "--out",
            "data/d",
            "--locations",
            "40",
            "--image-size",
            &view_size.to_string(),
        ],
    );
    std::fs::write(
        root.join("exp.toml"),
        format!(
            "name = \"load\"\n[dataset]\ndirs = [\"data/d\"]\n[model]\nbackbone = \"tiny-cnn\"\n\
             [train]\nimage_size = {image_size}\nbatch_size = 8\nepochs = 1\ndevice = \"cpu\"\n"
        ),
    )
    .expect("experiment file");
    geoexp(root, &["run", "exp.toml"]);
    let run = std::fs::read_dir(root.join("runs/load"))
        .expect("run folder")
        .next()
        .expect("one run")
        .expect("entry")
        .path();
    std::fs::create_dir(root.join("models")).expect("models folder");
    std::fs::copy(
        run.join("checkpoints/best.safetensors"),
        root.join("models/tiny.safetensors"),
    )
    .expect("checkpoint copy");

    let mut cmd = Command::new(env!("CARGO_BIN_EXE_geoexp"));
    cmd.current_dir(root)
        .args([
            "serve", "--models", "models", "--port", "0", "--device", "cpu",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (var, flag) in [
        ("LOAD_WORKERS", "--workers"),
        ("LOAD_BATCH_SIZE", "--batch-size"),
    ] {
        if let Ok(v) = std::env::var(var) {
            cmd.args([flag, &v]);
        }
    }
    let mut server = cmd.spawn().expect("server starts");
    let mut line = String::new();
    BufReader::new(server.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("address line");
    let base = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .expect("address in the first line")
        .trim_end_matches('/')
        .to_owned();
    let url = format!("{base}/model/tiny/predict-cardinal-images");

    // Different locations in turn, so requests are not all identical.
    let images = root.join("data/d/images");
    let mut uuids: Vec<_> = std::fs::read_dir(&images)
        .expect("images")
        .map(|e| e.expect("entry").file_name())
        .collect();
    uuids.sort();
    let uploads: Vec<Vec<(String, Vec<u8>)>> = uuids
        .iter()
        .map(|u| {
            ["0", "90", "180", "270"]
                .iter()
                .map(|h| {
                    let name = format!("{h}.jpg");
                    let bytes = std::fs::read(images.join(u).join(&name)).expect("view");
                    (name, bytes)
                })
                .collect()
        })
        .collect();
    let upload_bytes: usize = uploads[0].iter().map(|(_, b)| b.len()).sum();

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (latencies, wall, errors) = runtime.block_on(async {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(concurrency)
            .build()
            .expect("client");
        let form = |i: usize| {
            let mut f = Form::new();
            for (name, bytes) in &uploads[i % uploads.len()] {
                f = f.part("images", Part::bytes(bytes.clone()).file_name(name.clone()));
            }
            f
        };
        let send = |i: usize| {
            let (client, url) = (client.clone(), url.clone());
            let body = form(i);
            async move {
                let started = Instant::now();
                let response = client.post(&url).multipart(body).send().await;
                let answer: Result<(f64, f64), String> = match response {
                    Ok(r) if r.status().is_success() => {
                        let a: serde_json::Value = r.json().await.map_err(|e| e.to_string())?;
                        a["latitude"]
                            .as_f64()
                            .zip(a["longitude"].as_f64())
                            .ok_or_else(|| format!("no coordinates in {a}"))
                    }
                    Ok(r) => Err(format!(
                        "{}: {}",
                        r.status(),
                        r.text().await.unwrap_or_default()
                    )),
                    Err(e) => Err(e.to_string()),
                };
                Ok::<_, String>((started.elapsed(), answer))
            }
        };
        // One request per distinct upload alone: the answers the loaded server must give.
        let mut expected = Vec::with_capacity(uploads.len());
        for i in 0..uploads.len() {
            let (_, answer) = send(i).await.expect("request");
            expected.push(answer.expect("a lone request succeeds"));
        }
        let expected = Arc::new(expected);
        let gate = Arc::new(tokio::sync::Semaphore::new(concurrency));
        let started = Instant::now();
        let tasks: Vec<_> = (0..requests)
            .map(|i| {
                let (gate, fut) = (Arc::clone(&gate), send(i));
                tokio::spawn(async move {
                    let _permit = gate.acquire_owned().await.expect("gate");
                    fut.await
                })
            })
            .collect();
        let mut latencies = Vec::with_capacity(requests);
        let mut errors = 0;
        for (i, t) in tasks.into_iter().enumerate() {
            let (latency, answer) = t
                .await
                .expect("task")
                .unwrap_or_else(|e| (Duration::ZERO, Err(e)));
            latencies.push(latency);
            let want = expected[i % expected.len()];
            let problem = match answer {
                Ok((lat, lon)) if (lat - want.0).abs() < 1e-6 && (lon - want.1).abs() < 1e-6 => {
                    None
                }
                Ok(got) => Some(format!("answer {got:?}, alone {want:?}")),
                Err(e) => Some(e),
            };
            if let Some(p) = problem {
                if errors == 0 {
                    eprintln!("request {i}: {p}");
                }
                errors += 1;
            }
        }
        (latencies, started.elapsed(), errors)
    });
    let alive = server.try_wait().expect("server status").is_none();
    let _ = server.kill();
    let _ = server.wait();

    let mut sorted = latencies.clone();
    sorted.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{requests} predict-cardinal-images requests, {concurrency} at a time, tiny-cnn at {image_size} px, \
         uploads of 4 × {view_size} px JPEG ({} KiB), {} CPU threads",
        upload_bytes / 1024,
        std::thread::available_parallelism().map_or(1, usize::from)
    );
    println!(
        "{:.1} requests/s   p50 {:.1} ms   p90 {:.1} ms   p99 {:.1} ms   max {:.1} ms   wall {:.2} s",
        requests as f64 / wall.as_secs_f64(),
        ms(percentile(&sorted, 0.50)),
        ms(percentile(&sorted, 0.90)),
        ms(percentile(&sorted, 0.99)),
        ms(*sorted.last().expect("requests")),
        wall.as_secs_f64()
    );
    println!(
        "wrong or failed answers: {errors}; server still running afterwards: {}",
        if alive { "yes" } else { "NO" }
    );
    assert_eq!(errors, 0, "every answer must match the lone request's");
    assert!(alive, "the server must survive the load");
}
