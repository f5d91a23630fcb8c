//! What users open in a browser, opened in a real one: `geoexp serve`'s upload page and the
//! HTML reports of `geoexp report`, in headless Chromium driven by `tests/browser/check.mjs`
//! (Node.js and the npm package playwright-core).
//!
//! The script prints what it saw as one JSON object (coordinates read from the page, console
//! errors, timings); the tests here assert on it. Screenshots and timings land in
//! `$GEOEXP_BROWSER_OUT`, else `$CARGO_TARGET_DIR/browser-check/` (`target/browser-check/`);
//! `cargo test --test cli browser -- --nocapture` prints both.
//!
//! Where node, `tests/browser/node_modules/playwright-core` (`npm ci` in tests/browser) or a
//! Chromium that starts (`$CHROMIUM`, else /usr/bin/chromium) is missing, the tests say
//! SKIPPED on stderr and pass, as the Slurm test does: `.ci/run` installs all three.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{TestEnv, predicted, train_tiny, write_tiny};

/// Every single wait in the browser (page loads, answers, screenshots).
const WAIT_MS: u64 = 30_000;
/// The whole script, after which it is stopped: above the script's own limit (4 waits).
const SCRIPT_LIMIT: Duration = Duration::from_secs(5 * WAIT_MS / 1000);
const HEADINGS: [&str; 4] = ["0", "90", "180", "270"];

/// What the check needs, once found.
struct Browser {
    node: String,
    chromium: String,
    script: PathBuf,
}

/// Node, playwright-core and a Chromium executable, or why one of them is missing.
fn find_browser() -> Result<Browser, String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let node = std::env::var("NODE").unwrap_or_else(|_| "node".to_owned());
    match Command::new(&node).arg("--version").output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => return Err(format!("`{node} --version` failed ({})", out.status)),
        Err(e) => return Err(format!("node cannot be started ({e})")),
    }
    let playwright = dir.join("node_modules/playwright-core/package.json");
    if !playwright.is_file() {
        return Err(format!("{} is missing", playwright.display()));
    }
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    if !Path::new(&chromium).is_file() {
        return Err(format!(
            "no Chromium at {chromium} (set CHROMIUM to another)"
        ));
    }
    Ok(Browser {
        node,
        chromium,
        script: dir.join("check.mjs"),
    })
}

/// Says why the browser check is skipped (stderr, like the Slurm test).
fn skip(why: &str) {
    eprintln!(
        "SKIPPED browser check: {why}; run `npm ci` in tests/browser and install chromium to enable it"
    );
}

/// Where screenshots go: `$GEOEXP_BROWSER_OUT`, else `<target dir>/browser-check`.
fn out_dir() -> PathBuf {
    let dir = match std::env::var_os("GEOEXP_BROWSER_OUT") {
        Some(dir) => PathBuf::from(dir),
        None => std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("target"))
            .join("browser-check"),
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// Reads all of `from` on a thread of its own.
fn collect(mut from: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = from.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Runs check.mjs on `spec` (written into `env`'s folder); its JSON result, or `Err` with
/// the reason when Chromium could not be launched (exit 3: the check is skipped).
fn run_check(browser: &Browser, env: &TestEnv, spec: &Value) -> Result<Value, String> {
    let spec_path = env.write("browser-spec.json", &spec.to_string());
    let mut child = Command::new(&browser.node)
        .arg(&browser.script)
        .arg(&spec_path)
        .current_dir(browser.script.parent().unwrap())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = collect(child.stdout.take().unwrap());
    let stderr = collect(child.stderr.take().unwrap());
    let deadline = Instant::now() + SCRIPT_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            stop(&mut child);
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    let Some(status) = status else {
        panic!(
            "the browser check did not finish in {SCRIPT_LIMIT:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
        );
    };
    let result: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "check.mjs ({status}) printed no JSON ({e})\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
        )
    });
    match status.code() {
        Some(0) => Ok(result),
        Some(3) => Err(format!(
            "Chromium ({}) cannot start: {}",
            browser.chromium,
            result["launch_error"]
                .as_str()
                .unwrap_or("?")
                .replace('\n', " | ")
        )),
        _ => panic!(
            "check.mjs failed ({status}): {}\n--- stderr\n{stderr}",
            result["error"].as_str().unwrap_or("?")
        ),
    }
}

/// SIGTERM first, so that Node closes the browser it launched; SIGKILL if that is not enough.
fn stop(child: &mut Child) {
    let pid = child.id() as libc::pid_t;
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let grace = Instant::now() + Duration::from_secs(5);
    while Instant::now() < grace {
        if child.try_wait().unwrap().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Panics unless every list `keys` names in `page` is empty.
#[track_caller]
fn assert_clean(page: &Value, what: &str, keys: &[&str]) {
    for key in keys {
        let list = &page[*key];
        assert!(
            list.as_array().is_none_or(Vec::is_empty),
            "{what}: {key}: {list:#}"
        );
    }
    if let Some(error) = page["error"].as_str() {
        panic!("{what}: {error}\n{page:#}");
    }
}

/// A `geoexp serve` on a free loopback port, killed when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(env: &TestEnv, args: &[&str]) -> Server {
        let log = env.path().join("serve.log");
        let mut child = env
            .cmd(&["serve", "--port", "0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        // The address line, with a limit; the rest of stdout is drained so that later lines
        // never meet a closed pipe.
        let (tx, rx) = mpsc::channel();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for line in stdout.lines() {
                let _ = tx.send(line.unwrap_or_default());
            }
        });
        let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
        let Some(url) = line.split_whitespace().find(|w| w.starts_with("http://")) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "geoexp serve printed no address in 30 s (got {line:?}); stderr: {}",
                fs::read_to_string(&log).unwrap_or_default()
            );
        };
        Server {
            url: url.to_owned(),
            child,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The first `n` locations of `images`, copied to `to` (both under `env`).
fn copy_locations(env: &TestEnv, images: &str, to: &str, n: usize) -> Vec<String> {
    let mut uuids: Vec<String> = fs::read_dir(env.path().join(images))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    uuids.sort();
    uuids.truncate(n);
    for uuid in &uuids {
        let dir = env.path().join(to).join(uuid);
        fs::create_dir_all(&dir).unwrap();
        for h in HEADINGS {
            let name = format!("{h}.jpg");
            fs::copy(
                env.path().join(images).join(uuid).join(&name),
                dir.join(name),
            )
            .unwrap();
        }
    }
    uuids
}

fn f64_at(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("no number `{key}` in {v}"))
}

#[test]
fn the_upload_page_in_chromium_shows_what_predict_answers() {
    let browser = match find_browser() {
        Ok(b) => b,
        Err(why) => return skip(&why),
    };
    let started = Instant::now();
    let env = TestEnv::new();
    let run_dir = train_tiny(&env, "");
    fs::create_dir_all(env.path().join("models")).unwrap();
    fs::copy(
        run_dir.join("checkpoints/best.safetensors"),
        env.path().join("models/tiny.safetensors"),
    )
    .unwrap();
    let uuids = copy_locations(&env, "data/d/images", "few", 3);
    env.run(&[
        "predict",
        run_dir.to_str().unwrap(),
        "--images",
        "few",
        "-o",
        "few.csv",
    ])
    .expect(0);
    let expected = predicted(&env.path().join("few.csv"));
    assert_eq!(expected.keys().cloned().collect::<Vec<_>>(), uuids);

    let server = Server::start(&env, &["--models", "models"]);
    let out = out_dir();
    // Two uploads in a row: the second answer must replace the first.
    let locations: Vec<Value> = uuids[..2]
        .iter()
        .map(|uuid| {
            let files: serde_json::Map<String, Value> = HEADINGS
                .iter()
                .map(|h| {
                    let path = env.path().join("few").join(uuid).join(format!("{h}.jpg"));
                    (h.to_string(), json!(path))
                })
                .collect();
            json!({ "uuid": uuid, "files": files })
        })
        .collect();
    let spec = json!({
        "chromium": browser.chromium,
        "out_dir": out,
        "timeout_ms": WAIT_MS,
        "upload": { "url": server.url, "locations": locations, "screenshot": "upload.png" },
        "pages": [],
    });
    let prepared = started.elapsed();
    let result = match run_check(&browser, &env, &spec) {
        Ok(r) => r,
        Err(why) => return skip(&why),
    };
    drop(server);
    let t = &result["timings_ms"];
    eprintln!(
        "browser check (upload page): training, predict and serve {} ms; Chromium {} started in \
         {} ms; page and model loaded in {} ms; upload → answer {} ms; check.mjs {} ms in all; \
         screenshot in {}",
        prepared.as_millis(),
        result["chromium_version"].as_str().unwrap_or("?"),
        t["launch"],
        t["upload_page_load"],
        t["upload_to_answer"],
        t["total"],
        out.display()
    );

    let upload = &result["upload"];
    assert_clean(
        upload,
        "upload page",
        &[
            "console_errors",
            "page_errors",
            "failed_requests",
            "blocked_requests",
        ],
    );
    assert_eq!(upload["models"], json!(["tiny"]), "the model list");
    let answers = upload["answers"].as_array().unwrap();
    assert_eq!(answers.len(), 2, "{upload:#}");
    for shown in answers {
        let uuid = shown["uuid"].as_str().unwrap();
        let want = expected[uuid];
        assert_eq!(shown["http_status"], 200, "{uuid}: {shown:#}");
        assert_eq!(
            shown["status_class"], "",
            "{uuid}: the page shows an error: {}",
            shown["status"]
        );
        assert_eq!(shown["state"], "done", "{uuid}: {shown:#}");
        // The coordinates the page keeps on its status line, exactly as answered.
        let kept = (
            f64_at(shown, "shown_latitude"),
            f64_at(shown, "shown_longitude"),
        );
        assert!(
            (kept.0 - want.0).abs() < 1e-6 && (kept.1 - want.1).abs() < 1e-6,
            "{uuid}: the page keeps {kept:?}, predict wrote {want:?}"
        );
        // The exact answer, from the JSON the page prints under the map.
        let answer = &shown["answer"];
        assert!(
            answer.is_object(),
            "{uuid}: #answer holds no JSON: {:?}",
            shown["answer_text"]
        );
        let got = (f64_at(answer, "latitude"), f64_at(answer, "longitude"));
        // As in the serve tests: batches of another size may round the last bits differently.
        assert!(
            (got.0 - want.0).abs() < 1e-6 && (got.1 - want.1).abs() < 1e-6,
            "{uuid}: the page shows {got:?}, predict wrote {want:?}"
        );
        // The line above the map (5 decimals) and the marker's tooltip (4) say the same.
        assert_eq!(
            shown["status"].as_str().unwrap(),
            format!("{:.5}, {:.5}", got.0, got.1),
            "{uuid}: the status line"
        );
        let rounded: Vec<f64> = shown["status"]
            .as_str()
            .unwrap()
            .split(", ")
            .map(|x| x.parse().unwrap())
            .collect();
        assert!(
            (rounded[0] - want.0).abs() < 6e-6 && (rounded[1] - want.1).abs() < 6e-6,
            "{uuid}: the status line {rounded:?} vs predict's {want:?}"
        );
        assert_eq!(
            shown["marker_title"].as_str(),
            Some(format!("{:.4}, {:.4}", got.0, got.1).as_str()),
            "{uuid}: the red marker's title"
        );
        assert_eq!(
            shown["top_markers"].as_u64(),
            Some(answer["top_classes"].as_array().unwrap().len() as u64),
            "{uuid}: one orange marker per top class"
        );
    }
    let screenshot = upload["screenshot"].as_str().unwrap();
    assert!(
        fs::read(screenshot).unwrap().starts_with(b"\x89PNG"),
        "{screenshot}"
    );
}

#[test]
fn run_and_sweep_reports_render_in_chromium_without_console_errors() {
    let browser = match find_browser() {
        Ok(b) => b,
        Err(why) => return skip(&why),
    };
    let started = Instant::now();
    let env = TestEnv::new();
    write_tiny(&env, "", "");
    env.run(&["run", "exp.toml"]).expect(0);
    let run_dir = env.run_dir("t");
    // A 2×2 grid over the same experiment: its dataset, classes and images stages are cached.
    env.run(&[
        "sweep",
        "exp.toml",
        "--set",
        "train.epochs=1",
        "--grid",
        "train.lr=1e-3,3e-3",
        "--grid",
        "train.batch_size=16,32",
    ])
    .expect(0);
    let sweeps: Vec<PathBuf> = fs::read_dir(env.path().join("runs/sweeps"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(sweeps.len(), 1, "{sweeps:?}");
    let sweep_dir = &sweeps[0];
    let sweep_id = sweep_dir.file_name().unwrap().to_str().unwrap();

    let runs = env.path().join("runs");
    let runs = runs.to_str().unwrap();
    let reports = [
        (
            "run-report",
            vec!["--runs-dir", runs, "report", run_dir.to_str().unwrap()],
            run_dir.join("report.html"),
        ),
        (
            "sweep-report",
            vec!["--runs-dir", runs, "report", "--sweep", sweep_id],
            sweep_dir.join("report.html"),
        ),
    ];
    let mut pages = Vec::new();
    for (name, args, html) in &reports {
        let made = env.run(args);
        assert_eq!(
            made.code,
            0,
            "`geoexp {}` failed\n--- stdout\n{}\n--- stderr\n{}",
            args.join(" "),
            made.stdout,
            made.stderr
        );
        assert!(
            html.is_file(),
            "`geoexp {}` wrote no {}",
            args.join(" "),
            html.display()
        );
        pages.push(json!({ "name": name, "path": html, "screenshot": format!("{name}.png") }));
    }

    let out = out_dir();
    let spec = json!({
        "chromium": browser.chromium,
        "out_dir": out,
        "timeout_ms": WAIT_MS,
        "upload": null,
        "pages": pages,
    });
    let prepared = started.elapsed();
    let result = match run_check(&browser, &env, &spec) {
        Ok(r) => r,
        Err(why) => return skip(&why),
    };
    let t = &result["timings_ms"];
    eprintln!(
        "browser check (reports): run, sweep and reports {} ms; Chromium {} started in {} ms; \
         rendered in ms: {}; check.mjs {} ms in all; screenshots in {}",
        prepared.as_millis(),
        result["chromium_version"].as_str().unwrap_or("?"),
        t["launch"],
        t["pages"],
        t["total"],
        out.display()
    );

    let shown = result["pages"].as_array().unwrap();
    assert_eq!(shown.len(), reports.len(), "{result:#}");
    for page in shown {
        let what = format!(
            "{} ({})",
            page["name"].as_str().unwrap_or("?"),
            page["path"].as_str().unwrap_or("?")
        );
        assert_clean(
            page,
            &what,
            &[
                "console_errors",
                "page_errors",
                "failed_requests",
                "blocked_requests",
                "broken_images",
                "dead_links",
            ],
        );
        let h1 = page["h1"].as_array().unwrap();
        assert!(!h1.is_empty(), "{what}: no <h1>");
        let screenshot = page["screenshot"].as_str().unwrap();
        assert!(
            fs::read(screenshot).unwrap().starts_with(b"\x89PNG"),
            "{screenshot}"
        );
    }
}
