//! [`load_pretrained`] on files written by real PyTorch (`tests/fixtures/weights/`, made by
//! `make_fixtures.py` there), and on safetensors files made here for the cases PyTorch files
//! do not need.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};

use super::formats::WeightsFile;
use super::{IGNORED_TENSORS, ignored, load_pretrained, prefix};
use crate::model::test_support::flat;
use crate::model::{FilePrefix, GeoNet, ModelError, init_seeded};
use crate::vocab::Fusion;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/weights")
        .join(name)
}

/// A seeded GeoNet on `backbone`: its var map.
fn net(backbone: &str) -> VarMap {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    GeoNet::new(backbone, Fusion::Mean, 3, vb).expect("known backbone");
    init_seeded(&varmap, 7).expect("init");
    varmap
}

/// Every var's values, bit for bit.
fn snapshot(varmap: &VarMap) -> BTreeMap<String, Vec<u32>> {
    varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let bits = flat::<f32>(&v.to_dtype(DType::F32).unwrap())
                .iter()
                .map(|x| x.to_bits())
                .collect();
            (k.clone(), bits)
        })
        .collect()
}

/// `make_fixtures.py`'s record of the tiny-cnn tensors: shape, first values, sum, weighted sum.
#[derive(serde::Deserialize)]
struct Expected {
    shape: Vec<usize>,
    first: Vec<f64>,
    sum: f64,
    wsum: f64,
}

/// Fails unless the backbone of `varmap` (a tiny-cnn) holds the fixtures' values.
fn assert_tiny_cnn_values(varmap: &VarMap, what: &str) {
    let expected: BTreeMap<String, Expected> =
        serde_json::from_str(&std::fs::read_to_string(fixture("tiny_cnn_expected.json")).unwrap())
            .unwrap();
    let vars = varmap.data().lock().unwrap();
    let backbone = vars.keys().filter(|k| k.starts_with("backbone.")).count();
    assert_eq!(
        backbone,
        expected.len(),
        "{what}: every backbone var is recorded"
    );
    for (name, e) in &expected {
        let var = &vars[&format!("backbone.{name}")];
        assert_eq!(var.dims(), e.shape.as_slice(), "{what}: {name}");
        let v: Vec<f64> = flat::<f32>(var).iter().map(|x| f64::from(*x)).collect();
        assert_eq!(v[..4], e.first[..], "{what}: {name}");
        // Multiples of 1/128 below 2: these sums are exact in f64.
        let sum: f64 = v.iter().sum();
        let wsum: f64 = v
            .iter()
            .enumerate()
            .map(|(i, x)| x * ((i % 7) as f64 + 1.0))
            .sum();
        assert_eq!((sum, wsum), (e.sum, e.wsum), "{what}: {name}");
    }
}

/// The error of loading `file` into `varmap`, after checking that no var changed.
fn load_err(varmap: &VarMap, path: &Path, file_prefix: Option<&str>) -> ModelError {
    let before = snapshot(varmap);
    let err = load_pretrained(varmap, path, "backbone.", file_prefix).unwrap_err();
    assert!(before == snapshot(varmap), "a var changed on error: {err}");
    err
}

fn assert_mentions(err: &ModelError, parts: &[&str]) {
    let msg = err.to_string();
    for p in parts {
        assert!(msg.contains(p), "`{p}` not in: {msg}");
    }
}

#[test]
fn the_ignore_list_matches_starts_ends_and_whole_names() {
    assert_eq!(IGNORED_TENSORS.len(), 5);
    for name in [
        "fc.weight",
        "fc.bias",
        "bn1.num_batches_tracked",
        "layer1.0.downsample.1.num_batches_tracked",
        "embeddings.position_ids",
        "embeddings.mask_token",
        "pooler.dense.weight",
    ] {
        assert!(ignored(name), "{name}");
    }
    for name in [
        "fc1.weight",
        "encoder.layers.0.mlp.fc1.weight",
        "encoder.embeddings.mask_token",
        "conv1.weight",
        "num_batches_tracked_x",
    ] {
        assert!(!ignored(name), "{name}");
    }
}

#[test]
fn every_pytorch_format_loads_the_same_tiny_cnn_values() {
    let mut loaded = Vec::new();
    for file in [
        "tiny_cnn.pth",
        "tiny_cnn_dataparallel.pt",
        "tiny_cnn_lightning.ckpt",
    ] {
        let varmap = net("tiny-cnn");
        let head = snapshot(&varmap)["head.weight"].clone();
        // 4 blocks × (conv weight, BatchNorm weight, bias, running mean and variance); the
        // files' `num_batches_tracked`, and the Lightning module's head, are left aside.
        let n = load_pretrained(&varmap, &fixture(file), "backbone.", None).unwrap();
        assert_eq!(n, 20, "{file}");
        assert_tiny_cnn_values(&varmap, file);
        assert_eq!(
            snapshot(&varmap)["head.weight"],
            head,
            "{file}: head untouched"
        );
        loaded.push(snapshot(&varmap));
    }
    assert!(loaded.iter().all(|s| *s == loaded[0]));
}

#[test]
fn the_prefix_is_inferred_from_the_names() {
    let varmap = net("tiny-cnn");
    let wanted: BTreeSet<String> = varmap
        .data()
        .lock()
        .unwrap()
        .keys()
        .filter_map(|k| k.strip_prefix("backbone.").map(String::from))
        .collect();
    let wanted: BTreeSet<&str> = wanted.iter().map(String::as_str).collect();
    let inferred = |file: &str, wanted: &BTreeSet<&str>| {
        let f = WeightsFile::open(&fixture(file)).unwrap();
        prefix::best(&prefix::coverage(f.names(), wanted)).map(String::from)
    };
    assert_eq!(inferred("tiny_cnn.pth", &wanted).unwrap(), "");
    assert_eq!(
        inferred("tiny_cnn_dataparallel.pt", &wanted).unwrap(),
        "module."
    );
    assert_eq!(
        inferred("tiny_cnn_lightning.ckpt", &wanted).unwrap(),
        "backbone."
    );
    assert_eq!(inferred("clip_pytorch_model.bin", &wanted), None);
    let clip = clip_vision();
    let clip: BTreeSet<&str> = clip.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        inferred("clip_pytorch_model.bin", &clip).unwrap(),
        "vision_model."
    );
    assert_eq!(
        inferred("clip_model.safetensors", &clip).unwrap(),
        "vision_model."
    );
}

/// The vision tower of the fixtures' tiny CLIP (hidden 16, MLP 32, 2 layers, 16×16 images in
/// 8×8 patches) under Hugging Face's names without `vision_model.`, with shapes.
fn clip_vision() -> Vec<(String, Vec<usize>)> {
    let (h, m) = (16, 32);
    let mut names: Vec<(String, Vec<usize>)> = vec![
        ("embeddings.class_embedding".into(), vec![h]),
        ("embeddings.patch_embedding.weight".into(), vec![h, 3, 8, 8]),
        ("embeddings.position_embedding.weight".into(), vec![5, h]),
        ("pre_layrnorm.weight".into(), vec![h]),
        ("pre_layrnorm.bias".into(), vec![h]),
        ("post_layernorm.weight".into(), vec![h]),
        ("post_layernorm.bias".into(), vec![h]),
    ];
    for i in 0..2 {
        let at = |rest: &str| format!("encoder.layers.{i}.{rest}");
        for proj in ["q_proj", "k_proj", "v_proj", "out_proj"] {
            names.push((at(&format!("self_attn.{proj}.weight")), vec![h, h]));
            names.push((at(&format!("self_attn.{proj}.bias")), vec![h]));
        }
        for norm in ["layer_norm1", "layer_norm2"] {
            names.push((at(&format!("{norm}.weight")), vec![h]));
            names.push((at(&format!("{norm}.bias")), vec![h]));
        }
        names.push((at("mlp.fc1.weight"), vec![m, h]));
        names.push((at("mlp.fc1.bias"), vec![m]));
        names.push((at("mlp.fc2.weight"), vec![h, m]));
        names.push((at("mlp.fc2.bias"), vec![h]));
    }
    names
}

/// A var map with the CLIP vision tower under `backbone.` (zeros) and a head.
fn clip_vars() -> VarMap {
    let varmap = VarMap::new();
    {
        let mut data = varmap.data().lock().unwrap();
        for (name, shape) in clip_vision() {
            let v = Var::zeros(shape, DType::F32, &Device::Cpu).unwrap();
            data.insert(format!("backbone.{name}"), v);
        }
        let head = Var::ones((3, 16), DType::F32, &Device::Cpu).unwrap();
        data.insert("head.weight".into(), head);
    }
    varmap
}

#[test]
fn a_hugging_face_clip_loads_its_vision_tower_only() {
    // What the Python side saved, read by candle's safetensors reader.
    let reference =
        candle_core::safetensors::load(fixture("clip_model.safetensors"), &Device::Cpu).unwrap();
    assert!(reference.keys().any(|k| k.starts_with("text_model.")));
    for file in ["clip_pytorch_model.bin", "clip_model.safetensors"] {
        let varmap = clip_vars();
        let n = load_pretrained(&varmap, &fixture(file), "backbone.", None).unwrap();
        assert_eq!(n, 39, "{file}");
        let got = snapshot(&varmap);
        for (name, _) in clip_vision() {
            let want: Vec<u32> = flat::<f32>(&reference[&format!("vision_model.{name}")])
                .iter()
                .map(|x| x.to_bits())
                .collect();
            assert_eq!(got[&format!("backbone.{name}")], want, "{file}: {name}");
        }
        assert!(
            got["backbone.embeddings.class_embedding"]
                .iter()
                .any(|b| *b != 0)
        );
        assert!(
            got["head.weight"].iter().all(|b| *b == 1f32.to_bits()),
            "{file}: head untouched"
        );
    }
}

#[test]
fn candle_pickle_views_and_dtypes_are_read_as_torch_saved_them() {
    let mut f = WeightsFile::open(&fixture("views.pt")).unwrap();
    let read = |f: &mut WeightsFile, name: &str| f.load(name).unwrap();
    let t = read(&mut f, "transposed");
    assert_eq!(t.dims(), [3, 2]);
    assert_eq!(flat::<f32>(&t), [0., 3., 1., 4., 2., 5.]);
    let t = read(&mut f, "permuted");
    assert_eq!(t.dims(), [3, 2, 4]);
    let want: Vec<f32> = (0..3)
        .flat_map(|i| (0..2).flat_map(move |j| (0..4).map(move |k| (j * 12 + i * 4 + k) as f32)))
        .collect();
    assert_eq!(flat::<f32>(&t), want);
    assert_eq!(flat::<f32>(&read(&mut f, "offset")), [5., 6., 7., 8.]);
    let t = read(&mut f, "f64");
    assert_eq!(
        (t.dtype(), flat::<f64>(&t)),
        (DType::F64, vec![0., 0.25, 0.5])
    );
    assert_eq!(flat::<i64>(&read(&mut f, "i64")), [-2, 7]);
    // candle's pickle reader knows no BoolStorage: listed, but unreadable.
    let err = f.shape("flags").unwrap_err();
    assert!(matches!(err, ModelError::ReadWeights { .. }));
    assert!(format!("{:?}", err).contains("BoolStorage"), "{err:?}");
}

/// Writes `tensors` as safetensors into `dir`.
fn safetensors(dir: &Path, name: &str, tensors: &[(String, Tensor)]) -> PathBuf {
    let path = dir.join(name);
    let map: HashMap<String, Tensor> = tensors.iter().cloned().collect();
    candle_core::safetensors::save(&map, &path).unwrap();
    path
}

/// The tiny-cnn fixture's tensors (f32), under `prefix`, each times `scale`, in `dtype`.
fn tiny_cnn_tensors(prefix: &str, scale: f64, dtype: DType) -> Vec<(String, Tensor)> {
    let varmap = net("tiny-cnn");
    load_pretrained(&varmap, &fixture("tiny_cnn.pth"), "backbone.", None).unwrap();
    let vars = varmap.data().lock().unwrap();
    vars.iter()
        .filter_map(|(k, v)| {
            let rel = k.strip_prefix("backbone.")?;
            let t = (v.as_tensor() * scale).unwrap().to_dtype(dtype).unwrap();
            Some((format!("{prefix}{rel}"), t))
        })
        .collect()
}

#[test]
fn an_explicit_prefix_overrides_inference() {
    let dir = tempfile::tempdir().unwrap();
    // An EMA checkpoint: the same network twice. Inference takes the shorter prefix.
    let mut tensors = tiny_cnn_tensors("model.", 1.0, DType::F64);
    tensors.extend(tiny_cnn_tensors("ema.", -1.0, DType::BF16));
    tensors.push(("step".into(), Tensor::new(&[3i64], &Device::Cpu).unwrap()));
    let path = safetensors(dir.path(), "ema.safetensors", &tensors);

    let inferred = net("tiny-cnn");
    load_pretrained(&inferred, &path, "backbone.", None).unwrap();
    let explicit = net("tiny-cnn");
    // Without the trailing dot: it is added.
    load_pretrained(&explicit, &path, "backbone.", Some("model")).unwrap();
    assert_tiny_cnn_values(&explicit, "model. (f64)");
    let (a, b) = (
        var(&inferred, "block2.bn.bias"),
        var(&explicit, "block2.bn.bias"),
    );
    assert!(
        a.iter().zip(&b).all(|(x, y)| *x == -y),
        "ema. is the model's negated (bf16)"
    );

    // The Lightning checkpoint's own prefix, given.
    let varmap = net("tiny-cnn");
    let n = load_pretrained(
        &varmap,
        &fixture("tiny_cnn_lightning.ckpt"),
        "backbone.",
        Some("backbone."),
    )
    .unwrap();
    assert_eq!(n, 20);
    assert_tiny_cnn_values(&varmap, "explicit backbone.");
}

fn var(varmap: &VarMap, rel: &str) -> Vec<f32> {
    flat::<f32>(&varmap.data().lock().unwrap()[&format!("backbone.{rel}")])
}

#[test]
fn a_wrong_explicit_prefix_names_the_one_that_fits() {
    let varmap = net("tiny-cnn");
    let path = fixture("tiny_cnn_dataparallel.pt");
    let err = load_err(&varmap, &path, Some("modul"));
    assert!(
        matches!(&err, ModelError::PrefixMismatch { prefix, under: 0, suggestion, .. }
            if prefix == "modul." && suggestion == "module."),
        "{err}"
    );
    assert_mentions(
        &err,
        &[
            "tiny_cnn_dataparallel.pt",
            "`model.weights_prefix = \"modul.\"` selects 0 tensor(s)",
            "fit the prefix `module.` (set `model.weights_prefix = \"module.\"`",
        ],
    );
    // Empty: every name is under it (20 vars and 4 `num_batches_tracked`), none is a var's.
    let err = load_err(&varmap, &path, Some(""));
    assert!(
        matches!(&err, ModelError::PrefixMismatch { under: 24, .. }),
        "{err}"
    );
    assert_mentions(
        &err,
        &["`model.weights_prefix = \"\"` selects 24 tensor(s)"],
    );
}

#[test]
fn weights_of_another_family_say_what_they_look_like() {
    let tiny = net("tiny-cnn");
    let err = load_err(&tiny, &fixture("clip_pytorch_model.bin"), None);
    assert!(matches!(err, ModelError::WrongFamily { .. }), "{err}");
    assert_mentions(
        &err,
        &[
            "clip_pytorch_model.bin",
            "looks like a CLIP vision tower (`vision_model.embeddings.class_embedding`",
            "the model's backbone expects geoexp tiny-cnn names such as `block0.conv.weight`",
        ],
    );

    let resnet = net("resnet18");
    let err = load_err(&resnet, &fixture("tiny_cnn_lightning.ckpt"), None);
    assert_mentions(
        &err,
        &[
            "tiny_cnn_lightning.ckpt",
            "looks like geoexp's tiny-cnn (`backbone.block0.conv.weight`",
            "expects torchvision ResNet names such as `layer1.0.conv1.weight`",
        ],
    );
    // A given prefix does not make it fit.
    let err = load_err(&resnet, &fixture("tiny_cnn.pth"), Some("x"));
    assert!(matches!(err, ModelError::WrongFamily { .. }), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let one = |name: &str| {
        (
            name.to_string(),
            Tensor::zeros(2, DType::F32, &Device::Cpu).unwrap(),
        )
    };
    let dino = safetensors(
        dir.path(),
        "dino.safetensors",
        &[
            one("dinov2.embeddings.cls_token"),
            one("dinov2.embeddings.mask_token"),
            one("classifier.weight"),
        ],
    );
    let err = load_err(&tiny, &dino, None);
    assert_mentions(
        &err,
        &["looks like a DINOv2", "`dinov2.embeddings.cls_token`"],
    );

    let other = safetensors(dir.path(), "other.safetensors", &[one("a.b"), one("c")]);
    let err = load_err(&tiny, &other, None);
    assert_mentions(
        &err,
        &[
            "other.safetensors holds none of the tensors the model's backbone needs, under any prefix (its names: `a.b`, `c`)",
            "expects geoexp tiny-cnn names",
        ],
    );
}

#[test]
fn missing_extra_and_misshapen_tensors_are_named_with_the_prefix() {
    // A var the file lacks.
    let varmap = net("tiny-cnn");
    varmap.data().lock().unwrap().insert(
        "backbone.block4.conv.weight".into(),
        Var::zeros((8, 128, 3, 3), DType::F32, &Device::Cpu).unwrap(),
    );
    let err = load_err(&varmap, &fixture("tiny_cnn_lightning.ckpt"), None);
    assert!(
        matches!(&err, ModelError::MissingTensors { names, prefix, .. }
            if names == &["backbone.block4.conv.weight"]
                && **prefix == FilePrefix { name: "backbone.".into(), inferred: true }),
        "{err}"
    );
    assert_mentions(
        &err,
        &[
            "tiny_cnn_lightning.ckpt lacks 1 tensor(s)",
            "`backbone.block4.conv.weight`",
            "tensors under the prefix `backbone.`, inferred from the names; `model.weights_prefix` sets another",
        ],
    );

    // A file tensor no var takes (not one of the ignored).
    let varmap = net("tiny-cnn");
    varmap
        .data()
        .lock()
        .unwrap()
        .remove("backbone.block3.bn.bias");
    let err = load_err(&varmap, &fixture("tiny_cnn.pth"), None);
    assert!(
        matches!(&err, ModelError::UnexpectedTensors { names, .. } if names == &["block3.bn.bias"]),
        "{err}"
    );
    assert_mentions(
        &err,
        &["tiny_cnn.pth has 1 tensor(s)", "no prefix inferred"],
    );

    // Another shape.
    let varmap = net("tiny-cnn");
    varmap.data().lock().unwrap().insert(
        "backbone.block1.bn.weight".into(),
        Var::zeros(31, DType::F32, &Device::Cpu).unwrap(),
    );
    let err = load_err(
        &varmap,
        &fixture("tiny_cnn_dataparallel.pt"),
        Some("module"),
    );
    assert!(
        matches!(&err, ModelError::ShapeMismatch { name, expected, found, prefix, .. }
            if name == "module.block1.bn.weight" && expected == &[31] && found == &[32]
                && !prefix.inferred),
        "{err}"
    );
    assert_mentions(
        &err,
        &[
            "tiny_cnn_dataparallel.pt",
            "tensors under the prefix `module.` set by `model.weights_prefix`",
        ],
    );
}

#[test]
fn a_state_dict_key_wins_over_stray_top_level_tensors() {
    // `{"epoch", "arch", "state_dict", "best_acc1": tensor, "optimizer"}`, whatever its name.
    let f = WeightsFile::open(&fixture("checkpoint.pth.tar")).unwrap();
    let names: Vec<&str> = f.names().collect();
    assert_eq!(
        names,
        [
            "0.bias",
            "0.weight",
            "1.bias",
            "1.num_batches_tracked",
            "1.running_mean",
            "1.running_var",
            "1.weight"
        ]
    );
    assert_eq!(f.shape("0.weight").unwrap(), [2, 3, 1, 1]);
}

#[test]
fn files_that_are_no_state_dict_say_what_they_hold() {
    let varmap = net("tiny-cnn");
    let cases: [(&str, &[&str]); 5] = [
        (
            "whole_module.pt",
            &[
                "a pickled `torch.nn.modules.container.Sequential` object",
                "`torch.save(model.state_dict(), path)`",
            ],
        ),
        ("list.pt", &["holds a list of 2 item(s), not a state dict"]),
        (
            "no_tensors.pt",
            &["a dict without tensors (`config`: a dict of 2 item(s), `epoch`: int)"],
        ),
        (
            "nested.pth",
            &[
                "tensors are under `student`, `teacher`",
                "`torch.save(checkpoint[\"student\"], path)`",
            ],
        ),
        (
            "legacy.pth",
            &["legacy (pre-1.6, non-zip) format", "torch.save(torch.load("],
        ),
    ];
    for (file, parts) in cases {
        let err = load_err(&varmap, &fixture(file), None);
        assert_mentions(&err, &[file]);
        assert_mentions(&err, parts);
    }
    assert!(matches!(
        load_err(&varmap, &fixture("legacy.pth"), None),
        ModelError::LegacyTorchFormat { .. }
    ));

    let dir = tempfile::tempdir().unwrap();
    let gguf = dir.path().join("model.gguf");
    std::fs::write(&gguf, b"GGUF\x03\x00\x00\x00").unwrap();
    let err = load_err(&varmap, &gguf, None);
    assert!(
        matches!(err, ModelError::UnknownWeightsFormat { .. }),
        "{err}"
    );
    assert_mentions(
        &err,
        &["model.gguf is neither safetensors nor a PyTorch checkpoint"],
    );
    let err = load_err(&varmap, &dir.path().join("nope.pth"), None);
    assert!(matches!(err, ModelError::ReadWeights { .. }), "{err}");
}
