//! `geoexp serve`: the real server on a loopback port, called over HTTP.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use reqwest::StatusCode;
use reqwest::blocking::multipart::{Form, Part};
use reqwest::blocking::{Client, Response};
use serde_json::{Value, json};

use crate::common::{TestEnv, predicted, train_tiny};

/// A running server, killed when dropped.
struct Server {
    child: Child,
    base: String,
    client: Client,
}

impl Server {
    /// Starts `geoexp serve --port 0 <args>` (plus `env`) and waits for its address line.
    fn start(env: &TestEnv, args: &[&str], vars: &[(&str, &str)]) -> Server {
        let mut cmd = env.cmd(&["serve", "--port", "0"]);
        cmd.args(args)
            .envs(vars.iter().copied())
            .stdout(Stdio::piped())
            .stderr(fs::File::create(env.path().join("serve.log")).unwrap());
        let mut child = cmd.spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let Some(url) = line.split_whitespace().find(|w| w.starts_with("http://")) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "no address in {line:?}; stderr: {}",
                fs::read_to_string(env.path().join("serve.log")).unwrap_or_default()
            );
        };
        Server {
            base: url.trim_end_matches('/').to_owned(),
            child,
            client: Client::new(),
        }
    }

    fn get(&self, path: &str) -> Response {
        self.client
            .get(format!("{}{path}", self.base))
            .send()
            .unwrap()
    }

    fn post_files(&self, path: &str, files: &[(&str, &str, Vec<u8>)]) -> Response {
        let mut form = Form::new();
        for (field, name, bytes) in files {
            form = form.part(
                field.to_string(),
                Part::bytes(bytes.clone()).file_name(name.to_string()),
            );
        }
        self.client
            .post(format!("{}{path}", self.base))
            .multipart(form)
            .send()
            .unwrap()
    }

    fn post_json(&self, path: &str, body: &Value) -> Response {
        self.client
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .unwrap()
    }

    /// Panics unless the server process is still running.
    fn assert_alive(&mut self) {
        assert!(
            self.child.try_wait().unwrap().is_none(),
            "the server exited"
        );
        assert_eq!(self.get("/models").status(), StatusCode::OK);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The status and JSON body of a response.
fn read(response: Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

/// Panics unless `response` is an error with `status` whose message contains `text`.
#[track_caller]
fn assert_error(response: Response, status: StatusCode, text: &str) {
    let (got, body) = read(response);
    assert_eq!(got, status, "{body}");
    let message = body["error"].as_str().unwrap_or_default();
    assert!(message.contains(text), "{message:?} lacks {text:?}");
}

/// The four views of `uuid` as upload parts named `0.jpg` ... `270.jpg`.
fn views(images: &Path, uuid: &str) -> Vec<(&'static str, &'static str, Vec<u8>)> {
    ["0.jpg", "90.jpg", "180.jpg", "270.jpg"]
        .into_iter()
        .map(|n| ("images", n, fs::read(images.join(uuid).join(n)).unwrap()))
        .collect()
}

/// A trained model copied to `models/tiny.safetensors`, and the run folder.
fn setup(env: &TestEnv) -> PathBuf {
    let run_dir = train_tiny(env, "");
    fs::create_dir_all(env.path().join("models")).unwrap();
    fs::copy(
        run_dir.join("checkpoints/best.safetensors"),
        env.path().join("models/tiny.safetensors"),
    )
    .unwrap();
    run_dir
}

fn close(a: &Value, b: (f64, f64)) -> bool {
    (a["latitude"].as_f64().unwrap() - b.0).abs() < 1e-6
        && (a["longitude"].as_f64().unwrap() - b.1).abs() < 1e-6
}

#[test]
fn every_endpoint_answers_valid_requests_like_predict_does() {
    let env = TestEnv::new();
    let run_dir = setup(&env);
    env.run(&[
        "predict",
        run_dir.to_str().unwrap(),
        "--images",
        "data/d",
        "-o",
        "p.csv",
    ])
    .expect(0);
    let expected = predicted(&env.path().join("p.csv"));
    let mut server = Server::start(&env, &["--models", "models", "--data-root", "data"], &[]);

    let (status, names) = read(server.get("/models"));
    assert_eq!((status, names), (StatusCode::OK, json!(["tiny"])));
    // A checkpoint copied in later is listed without a restart.
    fs::copy(
        env.path().join("models/tiny.safetensors"),
        env.path().join("models/again.safetensors"),
    )
    .unwrap();
    assert_eq!(read(server.get("/models")).1, json!(["again", "tiny"]));

    let (status, info) = read(server.get("/model/tiny"));
    assert_eq!(status, StatusCode::OK);
    assert_eq!(info["backbone"], "tiny-cnn");
    let classes = info["centroids"].as_array().unwrap().len();
    assert!(classes > 1);

    let images = env.path().join("data/d/images");
    let uuid = expected.keys().next().unwrap().clone();
    let (status, answer) = read(server.post_files(
        "/model/tiny/predict-cardinal-images",
        &views(&images, &uuid),
    ));
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(
        close(&answer, expected[&uuid]),
        "{answer} vs {:?}",
        expected[&uuid]
    );
    let top = answer["top_classes"].as_array().unwrap();
    assert_eq!(top.len(), classes.min(5));
    let p: Vec<f64> = top
        .iter()
        .map(|c| c["probability"].as_f64().unwrap())
        .collect();
    assert!(p.windows(2).all(|w| w[0] >= w[1]), "best first: {p:?}");

    // Shuffled upload order and other extensions give the same answer.
    let mut shuffled = views(&images, &uuid);
    shuffled.reverse();
    shuffled[0].1 = "270.JPEG";
    let (_, again) = read(server.post_files("/model/tiny/predict-cardinal-images", &shuffled));
    assert_eq!(again, answer);

    let two = [
        views(&images, &uuid)[0].clone(),
        views(&images, &uuid)[1].clone(),
    ];
    let (status, answers) = read(server.post_files("/model/tiny/predict-images", &two));
    assert_eq!(status, StatusCode::OK, "{answers}");
    assert_eq!(answers.as_array().unwrap().len(), 2);

    let response = server.post_json(
        "/model/tiny/predict-directory",
        &json!({ "dataset_directory_path": "d/images" }),
    );
    assert_eq!(response.headers()["x-geoexp-skipped"], "0");
    let (status, located) = read(response);
    assert_eq!(status, StatusCode::OK);
    let located = located.as_array().unwrap();
    let uuids: Vec<&str> = located
        .iter()
        .map(|l| l["uuid"].as_str().unwrap())
        .collect();
    assert_eq!(
        uuids,
        expected.keys().map(String::as_str).collect::<Vec<_>>()
    );
    for l in located {
        assert!(close(l, expected[l["uuid"].as_str().unwrap()]), "{l}");
    }

    // Concurrent requests are batched into shared forward passes; each still gets its own
    // location's answer.
    let answers: Vec<(String, Value)> = std::thread::scope(|scope| {
        let handles: Vec<_> = expected
            .keys()
            .take(12)
            .map(|uuid| {
                let (server, images) = (&server, &images);
                scope.spawn(move || {
                    let response = server
                        .post_files("/model/tiny/predict-cardinal-images", &views(images, uuid));
                    (uuid.clone(), read(response).1)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (uuid, answer) in answers {
        assert!(close(&answer, expected[&uuid]), "{uuid}: {answer}");
    }

    let page = server.get("/");
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().unwrap().contains("predict-cardinal-images"));
    let (status, doc) = read(server.get("/openapi.json"));
    assert_eq!(status, StatusCode::OK);
    assert!(doc["paths"]["/model/{name}/predict-directory"].is_object());
    server.assert_alive();
}

#[test]
fn invalid_requests_get_clear_errors_and_the_server_stays_up() {
    let env = TestEnv::new();
    setup(&env);
    let images = env.path().join("data/d/images");
    let uuid = fs::read_dir(&images)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name();
    let uuid = uuid.to_str().unwrap();
    let secret = env.write("secret/x.safetensors", "not for you");
    std::os::unix::fs::symlink(&secret, env.path().join("models/leak.safetensors")).unwrap();
    std::os::unix::fs::symlink(env.path().join("secret"), env.path().join("data/out")).unwrap();
    std::os::unix::fs::symlink(
        "gone.safetensors",
        env.path().join("models/dangling.safetensors"),
    )
    .unwrap();
    fs::create_dir(env.path().join("models/folder.safetensors")).unwrap();
    let mut server = Server::start(
        &env,
        &["--models", "models", "--max-files", "6"],
        &[
            ("GEOEXP_SERVE_DATA_ROOT", "data"),
            ("GEOEXP_SERVE_MAX_UPLOAD", "64KiB"),
        ],
    );
    let one = views(&images, uuid)[..1].to_vec();

    // Models: unknown, traversal, links leading out, files that are not checkpoints.
    assert_eq!(read(server.get("/models")).1, json!(["tiny"]));
    assert_error(
        server.post_files("/model/dangling/predict-images", &one),
        StatusCode::NOT_FOUND,
        "model `dangling` is a dangling link",
    );
    assert_error(
        server.post_files("/model/folder/predict-images", &one),
        StatusCode::NOT_FOUND,
        "model `folder` is not a regular file (a directory)",
    );
    assert_error(
        server.post_files("/model/nope/predict-images", &one),
        StatusCode::NOT_FOUND,
        "no model named `nope`",
    );
    for name in [
        "..%2Fsecret%2Fx",
        "..%2F..%2Fetc%2Fpasswd",
        "%2Fetc%2Fpasswd",
        ".hidden",
    ] {
        assert_error(
            server.post_files(&format!("/model/{name}/predict-images"), &one),
            StatusCode::NOT_FOUND,
            "no model named",
        );
    }
    assert_error(
        server.get("/model/leak"),
        StatusCode::FORBIDDEN,
        "outside the model directory",
    );

    // Uploads: file names, non-images, fields, sizes, counts.
    let mut three = views(&images, uuid);
    three.pop();
    assert_error(
        server.post_files("/model/tiny/predict-cardinal-images", &three),
        StatusCode::BAD_REQUEST,
        "expected exactly four files named 0, 90, 180 and 270",
    );
    let mut renamed = views(&images, uuid);
    renamed[2].1 = "south.jpg";
    assert_error(
        server.post_files("/model/tiny/predict-cardinal-images", &renamed),
        StatusCode::BAD_REQUEST,
        "got 0.jpg, 90.jpg, south.jpg, 270.jpg",
    );
    assert_error(
        server.post_files(
            "/model/tiny/predict-images",
            &[("images", "notes.txt", b"just text".to_vec())],
        ),
        StatusCode::BAD_REQUEST,
        "notes.txt: cannot decode image: not a JPEG or PNG",
    );
    assert_error(
        server.post_files(
            "/model/tiny/predict-images",
            &[("photo", "0.jpg", one[0].2.clone())],
        ),
        StatusCode::BAD_REQUEST,
        "unexpected form field `photo`",
    );
    assert_error(
        server.post_files(
            "/model/tiny/predict-images",
            &[("images", "big.jpg", vec![0xFF; 100_000])],
        ),
        StatusCode::PAYLOAD_TOO_LARGE,
        "`big.jpg` is larger than the 64.0 KiB limit",
    );
    let many: Vec<_> = (0..7).map(|_| one[0].clone()).collect();
    assert_error(
        server.post_files("/model/tiny/predict-images", &many),
        StatusCode::PAYLOAD_TOO_LARGE,
        "at most 6 files per request",
    );
    assert_error(
        server
            .client
            .post(format!("{}/model/tiny/predict-images", server.base))
            .body("plain")
            .send()
            .unwrap(),
        StatusCode::BAD_REQUEST,
        "expected a multipart/form-data upload",
    );
    // A multipart body cut off in the middle is the client's fault: 400, in JSON.
    assert_error(
        server
            .client
            .post(format!("{}/model/tiny/predict-images", server.base))
            .header("content-type", "multipart/form-data; boundary=XyZ")
            .body("--XyZ\r\nContent-Disposition: form-data; name=\"images\"; filename=\"0.jpg\"\r\n\r\nhalf a fi")
            .send()
            .unwrap(),
        StatusCode::BAD_REQUEST,
        "malformed upload",
    );
    // A wrong method gets the API's JSON error too, not an empty body.
    assert_error(
        server.get("/model/tiny/predict-images"),
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed",
    );

    // Directories: outside the data root by `..`, absolute path or link; missing; bad JSON.
    let directory = |body: Value| server.post_json("/model/tiny/predict-directory", &body);
    let outside = env.path().join("secret");
    for path in [
        "../secret",
        "d/../../secret",
        outside.to_str().unwrap(),
        "/etc",
        "out",
    ] {
        assert_error(
            directory(json!({ "dataset_directory_path": path })),
            StatusCode::FORBIDDEN,
            "outside the data root",
        );
    }
    assert_error(
        directory(json!({ "dataset_directory_path": "missing" })),
        StatusCode::NOT_FOUND,
        "no directory `missing`",
    );
    assert_error(
        directory(json!({ "path": "d" })),
        StatusCode::BAD_REQUEST,
        "expected JSON {\"dataset_directory_path\"",
    );
    assert_error(
        server.get("/nowhere"),
        StatusCode::NOT_FOUND,
        "no such endpoint",
    );

    // Folders with a missing or unreadable view are left out and counted.
    for (folder, count) in [("whole", 4), ("three", 3), ("broken", 4)] {
        let dir = env.path().join("data/partial").join(folder);
        fs::create_dir_all(&dir).unwrap();
        for (_, name, bytes) in views(&images, uuid).into_iter().take(count) {
            fs::write(dir.join(name), bytes).unwrap();
        }
    }
    fs::write(env.path().join("data/partial/broken/90.jpg"), b"garbage").unwrap();
    let response = directory(json!({ "dataset_directory_path": "partial" }));
    assert_eq!(response.headers()["x-geoexp-skipped"], "2");
    let (status, located) = read(response);
    assert_eq!(status, StatusCode::OK, "{located}");
    assert_eq!(located.as_array().unwrap().len(), 1);
    assert_eq!(located[0]["uuid"], "whole");
    server.assert_alive();
    // After all that, predictions still work.
    assert_eq!(
        server
            .post_files("/model/tiny/predict-images", &one)
            .status(),
        StatusCode::OK
    );
}

#[test]
fn predict_directory_is_refused_without_a_data_root_and_bad_settings_fail_at_start() {
    let env = TestEnv::new();
    setup(&env);
    let server = Server::start(&env, &[], &[("GEOEXP_SERVE_MODELS", "models")]);
    assert_error(
        server.post_json(
            "/model/tiny/predict-directory",
            &json!({ "dataset_directory_path": "d" }),
        ),
        StatusCode::FORBIDDEN,
        "start the server with --data-root",
    );
    drop(server);
    let missing = env
        .run(&["serve", "--models", "nope", "--port", "0"])
        .expect(2);
    assert!(
        missing.stderr.contains("model directory nope") && missing.stderr.contains("--models"),
        "{}",
        missing.stderr
    );
    let size = env
        .run(&["serve", "--models", "models", "--max-upload", "lots"])
        .expect(2);
    assert!(size.stderr.contains("--max-upload"), "{}", size.stderr);
    // A port in use: the reason once.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let busy = env
        .run(&["serve", "--models", "models", "--port", &port])
        .expect(2);
    assert!(busy.stderr.contains("cannot listen on"), "{}", busy.stderr);
    assert_eq!(busy.stderr.matches("in use").count(), 1, "{}", busy.stderr);
}
