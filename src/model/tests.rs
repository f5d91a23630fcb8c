//! Tests across the model files: shapes, freezing, training, seeded init, pretrained weights.

use std::collections::{BTreeSet, HashMap};

use candle_core::{DType, Device, Tensor};
use candle_nn::{Optimizer, VarBuilder, VarMap};

use super::test_support::{flat, var};
use super::*;
use crate::vocab::Fusion;

fn build(backbone: &str, fusion: Fusion, outputs: usize) -> (VarMap, GeoNet) {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let net = GeoNet::new(backbone, fusion, outputs, vb).expect("known backbone builds");
    init_seeded(&varmap, 7).expect("init");
    (varmap, net)
}

/// Deterministic pseudo-images `[b, 4, 3, s, s]` (candle's RNG has no seed).
fn images(b: usize, s: usize, salt: u32) -> Tensor {
    let n = b * 4 * 3 * s * s;
    let v: Vec<f32> = (0..n as u32)
        .map(|i| {
            let x = i
                .wrapping_mul(2654435761)
                .wrapping_add(salt.wrapping_mul(40503));
            (x >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
        })
        .collect();
    Tensor::from_vec(v, (b, 4, 3, s, s), &Device::Cpu).expect("shape matches")
}

#[test]
fn geonet_outputs_have_the_expected_shapes_for_concat_and_mean() {
    for backbone in ["tiny-cnn", "resnet18"] {
        for fusion in [Fusion::Concat, Fusion::Mean] {
            let (_, net) = build(backbone, fusion, 5);
            let y = net.forward(&images(2, 32, 1), 0).expect("forward");
            assert_eq!(y.dims(), [2, 5], "{backbone} {fusion:?}");
        }
    }
}

#[test]
fn concat_fusion_keeps_the_views_apart_and_mean_does_not() {
    // Swapping two views changes concat's output but not mean's.
    let x = images(1, 16, 3);
    let swapped = Tensor::cat(
        &[
            x.narrow(1, 1, 1).unwrap(),
            x.narrow(1, 0, 1).unwrap(),
            x.narrow(1, 2, 2).unwrap(),
        ],
        1,
    )
    .unwrap();
    let (_, concat) = build("tiny-cnn", Fusion::Concat, 3);
    let (_, mean) = build("tiny-cnn", Fusion::Mean, 3);
    let diff = |net: &GeoNet| {
        let a = net.forward(&x, 0).unwrap();
        let b = net.forward(&swapped, 0).unwrap();
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    };
    assert!(diff(&concat) > 1e-4);
    assert!(diff(&mean) < 1e-5);
}

#[test]
fn resnets_have_torchvision_names_shapes_and_blocks() {
    let (varmap, net) = build("resnext50_32x4d", Fusion::Mean, 2);
    let data = varmap.data().lock().unwrap();
    let dims = |n: &str| data[n].dims().to_vec();
    assert_eq!(dims("backbone.layer1.0.conv2.weight"), [128, 4, 3, 3]);
    assert_eq!(
        dims("backbone.layer1.0.downsample.0.weight"),
        [256, 64, 1, 1]
    );
    assert_eq!(dims("backbone.layer4.2.conv3.weight"), [2048, 1024, 1, 1]);
    assert_eq!(dims("backbone.bn1.running_var"), [64]);
    assert_eq!(dims("head.weight"), [2, 2048]);
    assert_eq!(net.backbone_blocks(), 1 + 3 + 4 + 6 + 3);
    drop(data);

    let (varmap, net) = build("resnet18", Fusion::Concat, 10);
    assert_eq!(net.backbone_blocks(), 9);
    assert_eq!(net.backbone().blocks()[0], ["conv1", "bn1"]);
    assert_eq!(net.backbone().blocks()[8], ["layer4.1"]);
    // The recorded per-block names are exactly the backbone's vars in the VarMap.
    let recorded: BTreeSet<String> = net.trainable_var_names(usize::MAX).into_iter().collect();
    let in_map: BTreeSet<String> = varmap
        .data()
        .lock()
        .unwrap()
        .keys()
        .filter(|k| k.starts_with("backbone."))
        .cloned()
        .collect();
    assert_eq!(recorded, in_map);
    assert_eq!(
        varmap.data().lock().unwrap()["head.weight"].dims(),
        [10, 4 * 512]
    );
    let last = net.trainable_var_names(1);
    assert!(
        last.iter().all(|n| n.starts_with("backbone.layer4.1.")),
        "{last:?}"
    );
    assert_eq!(last.len(), 2 + 2 * 4);
    assert_eq!(net.head_var_names(), ["head.weight", "head.bias"]);
}

#[test]
fn an_unknown_backbone_is_an_error_listing_the_known_ones() {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let err = GeoNet::new("resnet19", Fusion::Mean, 2, vb)
        .err()
        .expect("unknown");
    let msg = err.to_string();
    assert!(
        msg.contains("resnet19") && msg.contains("resnext101_32x8d"),
        "{msg}"
    );
}

#[test]
fn sgd_steps_on_tiny_cnn_lower_the_loss_on_a_fixed_batch() {
    let (varmap, net) = build("tiny-cnn", Fusion::Concat, 3);
    let x = images(6, 32, 5);
    let y = Tensor::new(&[0u32, 1, 2, 0, 1, 2], &Device::Cpu).unwrap();
    let mut opt = candle_nn::SGD::new(varmap.all_vars(), 0.05).unwrap();
    let all = net.backbone_blocks();
    let loss =
        |net: &GeoNet| candle_nn::loss::cross_entropy(&net.forward(&x, all).unwrap(), &y).unwrap();
    let first = loss(&net).to_scalar::<f32>().unwrap();
    for _ in 0..15 {
        opt.backward_step(&loss(&net)).unwrap();
    }
    let last = loss(&net).to_scalar::<f32>().unwrap();
    assert!(last < first * 0.7, "loss {first} → {last}");
}

#[test]
fn a_frozen_backbone_gets_no_gradient_and_keeps_its_running_stats() {
    let (varmap, net) = build("tiny-cnn", Fusion::Mean, 3);
    let x = images(2, 16, 9);
    let w0 = var(&varmap, "backbone.block0.conv.weight");
    let w3 = var(&varmap, "backbone.block3.conv.weight");
    let m0 = var(&varmap, "backbone.block0.bn.running_mean");
    let m3 = var(&varmap, "backbone.block3.bn.running_mean");
    let head = var(&varmap, "head.weight");
    let before = (flat::<f32>(&m0), flat::<f32>(&m3));

    let grads = net
        .forward(&x, 0)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert!(grads.get(&w0).is_none() && grads.get(&w3).is_none());
    assert!(grads.get(&head).is_some());
    assert_eq!((flat::<f32>(&m0), flat::<f32>(&m3)), before);

    // Only the last block trains: its stats move and it gets a gradient; block 0 does neither.
    let grads = net
        .forward(&x, 1)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert!(grads.get(&w0).is_none());
    let g3 = grads.get(&w3).expect("last block trains");
    assert!(flat::<f32>(g3).iter().any(|v| *v != 0.0));
    assert_eq!(flat::<f32>(&m0), before.0);
    assert_ne!(flat::<f32>(&m3), before.1);

    let grads = net
        .forward(&x, net.backbone_blocks())
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let g0 = grads.get(&w0).expect("first block trains");
    assert!(flat::<f32>(g0).iter().any(|v| *v != 0.0));
    assert_ne!(flat::<f32>(&m0), before.0);
}

#[test]
fn resnet18_fine_tunes_end_to_end() {
    let (varmap, net) = build("resnet18", Fusion::Concat, 4);
    let stem = var(&varmap, "backbone.conv1.weight");
    let stats = var(&varmap, "backbone.layer2.0.downsample.1.running_var");
    let before = flat::<f32>(&stats);
    let out = net
        .forward(&images(2, 32, 11), net.backbone_blocks())
        .unwrap();
    let grads = out.sqr().unwrap().sum_all().unwrap().backward().unwrap();
    let g = grads.get(&stem).expect("stem trains");
    assert!(flat::<f32>(g).iter().any(|v| *v != 0.0));
    assert_ne!(flat::<f32>(&stats), before);
}

#[test]
fn init_seeded_is_deterministic_per_seed() {
    let snapshot = |seed| {
        let (varmap, _) = build("tiny-cnn", Fusion::Mean, 3);
        init_seeded(&varmap, seed).unwrap();
        let data = varmap.data().lock().unwrap();
        data.iter()
            .map(|(k, v)| (k.clone(), flat::<f32>(v)))
            .collect::<HashMap<_, _>>()
    };
    let (a, b, c) = (snapshot(1), snapshot(1), snapshot(2));
    assert_eq!(a, b);
    let w = "backbone.block1.conv.weight";
    assert_ne!(a[w], c[w]);
    // torch's default init: conv weights within ±1/√fan_in; BN weight 1, bias 0, stats 0 / 1.
    let bound = 1.0 / ((16 * 3 * 3) as f32).sqrt();
    assert!(a[w].iter().all(|v| v.abs() <= bound) && a[w].iter().any(|v| v.abs() > bound / 2.0));
    assert!(a["backbone.block1.bn.weight"].iter().all(|v| *v == 1.0));
    assert!(a["backbone.block1.bn.bias"].iter().all(|v| *v == 0.0));
    assert!(
        a["backbone.block1.bn.running_var"]
            .iter()
            .all(|v| *v == 1.0)
    );
    assert!(
        a["backbone.block1.bn.running_mean"]
            .iter()
            .all(|v| *v == 0.0)
    );
    let head_bound = 1.0 / 128f32.sqrt();
    assert!(
        a["head.bias"]
            .iter()
            .all(|v| v.abs() <= head_bound && *v != 0.0)
    );
}

/// The backbone's vars under torchvision names (as a pretrained file would have them).
fn torchvision_file(varmap: &VarMap, dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    let tensors: HashMap<String, Tensor> = varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("backbone.")
                .map(|rel| (rel.to_string(), v.as_tensor().copy().unwrap()))
        })
        .collect();
    let path = dir.join(name);
    candle_core::safetensors::save(&tensors, &path).unwrap();
    path
}

#[test]
fn load_pretrained_round_trips_torchvision_names() {
    let dir = tempfile::tempdir().unwrap();
    let (src, _) = build("resnet18", Fusion::Mean, 2);
    init_seeded(&src, 123).unwrap();
    let mut tensors: HashMap<String, Tensor> = candle_core::safetensors::load(
        torchvision_file(&src, dir.path(), "r18.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    // What torchvision files also hold, and the loader ignores.
    tensors.insert(
        "fc.weight".into(),
        Tensor::zeros((1000, 512), DType::F32, &Device::Cpu).unwrap(),
    );
    tensors.insert(
        "bn1.num_batches_tracked".into(),
        Tensor::new(&[0i64], &Device::Cpu).unwrap(),
    );
    let path = dir.path().join("full.safetensors");
    candle_core::safetensors::save(&tensors, &path).unwrap();

    let (dst, _) = build("resnet18", Fusion::Mean, 2);
    let loaded = load_pretrained(&dst, &path, "backbone.", None).unwrap();
    assert_eq!(loaded, tensors.len() - 2);
    let (s, d) = (src.data().lock().unwrap(), dst.data().lock().unwrap());
    for (name, v) in s.iter().filter(|(k, _)| k.starts_with("backbone.")) {
        assert_eq!(flat::<f32>(v), flat::<f32>(&d[name]), "{name}");
    }
    assert_ne!(
        flat::<f32>(&s["head.weight"]),
        flat::<f32>(&d["head.weight"]),
        "head untouched"
    );
}

#[test]
fn load_pretrained_names_missing_misshapen_and_foreign_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let (r18, _) = build("resnet18", Fusion::Mean, 2);
    let path = torchvision_file(&r18, dir.path(), "r18.safetensors");

    // A resnet18 file for a resnet34: the extra layers are missing.
    let (r34, _) = build("resnet34", Fusion::Mean, 2);
    let err = load_pretrained(&r34, &path, "backbone.", None).unwrap_err();
    assert!(
        matches!(&err, ModelError::MissingTensors { names, .. } if names.contains(&"layer1.2.conv1.weight".to_string())),
        "{err}"
    );

    // The other way round: the file has layers the model lacks.
    let big = torchvision_file(&r34, dir.path(), "r34.safetensors");
    let err = load_pretrained(&r18, &big, "backbone.", None).unwrap_err();
    assert!(
        matches!(&err, ModelError::UnexpectedTensors { names, .. } if names.contains(&"layer3.5.bn2.bias".to_string())),
        "{err}"
    );

    let mut tensors: HashMap<String, Tensor> =
        candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    tensors.remove("layer2.1.bn1.running_var");
    let missing = dir.path().join("missing.safetensors");
    candle_core::safetensors::save(&tensors, &missing).unwrap();
    let err = load_pretrained(&r18, &missing, "backbone.", None).unwrap_err();
    assert!(
        err.to_string().contains("`layer2.1.bn1.running_var`"),
        "{err}"
    );

    tensors.insert(
        "layer2.1.bn1.running_var".into(),
        Tensor::ones(64, DType::F32, &Device::Cpu).unwrap(),
    );
    let wrong = dir.path().join("wrong.safetensors");
    candle_core::safetensors::save(&tensors, &wrong).unwrap();
    let err = load_pretrained(&r18, &wrong, "backbone.", None).unwrap_err();
    assert!(
        matches!(&err, ModelError::ShapeMismatch { name, expected, found, .. }
            if name == "layer2.1.bn1.running_var" && expected == &[128] && found == &[64]),
        "{err}"
    );
    let err = load_pretrained(
        &r18,
        &dir.path().join("nope.safetensors"),
        "backbone.",
        None,
    )
    .unwrap_err();
    assert!(matches!(err, ModelError::ReadWeights { .. }));
}

#[test]
fn resnext50_runs_forward_and_backward_with_grouped_convs() {
    let (varmap, net) = build("resnext50_32x4d", Fusion::Mean, 3);
    let out = net
        .forward(&images(1, 32, 13), net.backbone_blocks())
        .unwrap();
    assert_eq!(out.dims(), [1, 3]);
    let grads = out.sqr().unwrap().sum_all().unwrap().backward().unwrap();
    let grouped = var(&varmap, "backbone.layer1.0.conv2.weight");
    assert!(
        flat::<f32>(grads.get(&grouped).expect("grouped conv trains"))
            .iter()
            .any(|v| *v != 0.0)
    );
}
